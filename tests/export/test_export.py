import json

import numpy as np
import onnx
import pytest
import torch

from disseg.export.onnx_export import export_graph
from disseg.export.unroll import UnrolledDIS
from disseg.runtime import Segmenter, read_model_info
from disseg.train.checkpoint import model_from_checkpoint
from tests.conftest import run_cmd


@pytest.fixture(scope="module")
def net(tiny_run):
    return model_from_checkpoint(tiny_run / "best.pt")[0]


def test_file_size_does_not_grow_with_iterations(net):
    from disseg.export.onnx_export import attach, model_info

    def exported(t):
        proto = export_graph(net, t, height=64, width=64, batch=1, outputs=("labels",), fp16=False)
        info = model_info(
            net, iters=t, height=64, width=64, batch=1, outputs=("labels",), precision="fp32", checkpoint_sha256=""
        )
        return attach(proto, info)

    # t = 0 prunes the image subnet (unused without refinement); from t = 1 on, every step reuses its weights.
    p1, p3, p5 = exported(1), exported(3), exported(5)
    weight_bytes = [sum(len(i.raw_data) for i in p.graph.initializer) for p in (p1, p5, p3)]
    # each weight stored once, plus one flipped copy of each refinement conv (its input-VJP), shared by all steps
    flipped = sum(m.weight.numel() for m in (net.seg, net.rec_a, net.rec_b, net.rec_c))
    assert weight_bytes[0] <= 4 * (sum(p.numel() for p in net.parameters()) + flipped)
    # whether torch.onnx folds the flipped copies into initializers or flips at run time may change
    # with t, but never per step: t=3 and t=5 store the same weights
    assert abs(weight_bytes[1] - weight_bytes[2]) < 1_000
    assert 0 <= weight_bytes[1] - weight_bytes[0] <= 4 * flipped + 1_000
    growth = len(p5.SerializeToString()) - len(p1.SerializeToString())
    assert 0 < growth < 4 * 8_000  # only the added nodes: a few KB per step


def test_unrolled_module_matches_the_training_path(net):
    from disseg.train.engine import predict, to_input
    from disseg.train.refine import refine

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(2)]
    with torch.no_grad():
        labels = UnrolledDIS(net, 3)(torch.from_numpy(np.stack(frames)))[0]
        x = net.normalize(to_input(frames, torch.device("cpu")))
        u1, v1, img = net.features(x)
        u1, v1 = refine(net, u1, v1, img, steps=3, step_size=net.cfg.step_size)
        want, _ = predict(net.cfg, net.heads(u1, v1), 64, 64)
    assert torch.equal(labels.long(), want)


def test_export_writes_a_self_describing_parity_checked_model(tiny_run, tmp_path):
    out = tmp_path / "m.onnx"
    proc = run_cmd(
        "dis-export", str(tiny_run / "best.pt"), "--iters", "2", "--outputs", "labels,scores,tags", "-o", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    info = read_model_info(out)
    assert info.iterations == 2 and info.precision == "fp32" and info.outputs == ("labels", "scores", "tags")
    assert info.step_size == 20 and len(info.checkpoint_sha256) == 64 and info.config["stages"] == 2
    report = json.loads(out.with_suffix(".parity.json").read_text())
    assert report["passed"] and [r["iters"] for r in report["per_iteration"]] == [0, 1, 2]
    assert all(r["label_agreement"] >= 99.9 and r["max_abs_score_error"] < 1e-3 for r in report["per_iteration"])
    assert info.extra["parity"] == report
    model = onnx.load(out)
    onnx.checker.check_model(model)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    with Segmenter(out, backend="onnxruntime") as seg:
        r = seg(np.zeros((64, 64, 3), np.uint8))
        assert r.scores.shape == (info.num_classes, 64, 64) and r.scores.dtype == np.float32


def test_fp16_keeps_refinement_and_logits_fp32(tiny_run, tmp_path):
    out = tmp_path / "m16.onnx"
    proc = run_cmd("dis-export", str(tiny_run / "best.pt"), "--iters", "3", "--fp16", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    model = onnx.shape_inference.infer_shapes(onnx.load(out))
    types = {
        v.name: v.type.tensor_type.elem_type for v in [*model.graph.value_info, *model.graph.output, *model.graph.input]
    }
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert sum(types.get(n.output[0]) == onnx.TensorProto.FLOAT16 for n in convs) >= 10, "backbone should run in FP16"
    fp32_convs = [n for n in convs if types.get(n.output[0]) == onnx.TensorProto.FLOAT]
    assert len(fp32_convs) >= 4 * 3 + 4, "the refinement's 4 VJP convs per step and the 4 head convs stay FP32"
    updates = [n for n in model.graph.node if n.op_type == "Sub"]
    assert updates and all(types[n.output[0]] == onnx.TensorProto.FLOAT for n in updates)
    report = json.loads(out.with_suffix(".parity.json").read_text())
    assert report["precision"] == "fp16" and report["passed"] and all(r["finite"] for r in report["per_iteration"])
    assert read_model_info(out).precision == "fp16"


def test_fp16_keeps_the_refinement_weights_and_constants_exact(net):
    """At 512 px the energy's normaliser 3hw is 12288, past the FP16 converter's clamp (1e4): every initializer
    the FP32 part reads must hold the FP32 export's value, and no tensor between FP32 nodes is stored in FP16."""
    from onnx import numpy_helper

    from disseg.calibration.scopes import in_feature_extractor

    fp32 = export_graph(net, 3, height=512, width=512, batch=1, outputs=("labels", "scores", "tags"), fp16=False)
    fp16 = export_graph(net, 3, height=512, width=512, batch=1, outputs=("labels", "scores", "tags"), fp16=True)
    reference = {t.name: numpy_helper.to_array(t) for t in fp32.graph.initializer}
    kept = [t for t in fp16.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
    assert any(np.array_equal(numpy_helper.to_array(t), np.float32(3 * 64 * 64)) for t in kept)
    for tensor in kept:
        assert np.array_equal(numpy_helper.to_array(tensor), reference[tensor.name]), tensor.name
    readers = {}
    for node in fp16.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    halves = [n for n in fp16.graph.node if n.op_type == "Cast" and n.attribute[0].i == onnx.TensorProto.FLOAT16]
    assert all(
        any(in_feature_extractor(r) and r.op_type != "Cast" for r in readers.get(n.output[0], [])) for n in halves
    )


def test_exported_model_scores_like_the_checkpoint(tiny_run, tiny_data, tmp_path):
    out = tmp_path / "m.onnx"
    run_cmd("dis-export", str(tiny_run / "best.pt"), "--iters", "1", "-o", str(out), check=True)
    run_cmd("dis-eval", str(out), "--data", str(tiny_data), "--json", str(tmp_path / "onnx.json"), check=True)
    run_cmd(
        "dis-eval",
        str(tiny_run / "best.pt"),
        "--data",
        str(tiny_data),
        "--iters",
        "1",
        "--json",
        str(tmp_path / "pt.json"),
        check=True,
    )
    a = json.loads((tmp_path / "onnx.json").read_text())["results"][0]
    b = json.loads((tmp_path / "pt.json").read_text())["results"][0]
    assert a["iters"] == b["iters"] == 1
    assert a["miou"] == pytest.approx(b["miou"], abs=0.05)


def test_dynamic_batch_and_fixed_batch(tiny_run, tmp_path):
    dyn = tmp_path / "dyn.onnx"
    run_cmd("dis-export", str(tiny_run / "best.pt"), "--iters", "1", "--dynamic-batch", "-o", str(dyn), check=True)
    assert read_model_info(dyn).batch == "dynamic"
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    with Segmenter(dyn, backend="onnxruntime") as seg:
        assert seg.batch is None
        together = seg.segment_batch(frames)
        for f, r in zip(frames, together):
            assert np.array_equal(seg(f).labels, r.labels)
    fixed = tmp_path / "b3.onnx"  # the parity gate's held-out images are not a multiple of 3: padded, not refused
    proc = run_cmd("dis-export", str(tiny_run / "best.pt"), "--iters", "1", "--batch", "3", "-o", str(fixed))
    assert proc.returncode == 0, proc.stderr
    assert read_model_info(fixed).batch == 3 and read_model_info(fixed).extra["parity"]["passed"]
    with Segmenter(fixed, backend="onnxruntime") as seg:
        assert seg.batch == 3
        for f, r in zip(frames + frames[:1], seg.segment_batch(frames + frames[:1])):  # 4 frames: two calls, padded
            assert np.array_equal(seg(f).labels, r.labels)


@pytest.mark.parametrize(
    "case,message",
    [
        ("missing", "no such model file"),
        ("corrupt", "not a loadable disseg checkpoint"),
        ("foreign", "not a disseg checkpoint"),
        ("negative_iters", "not in the range 0<=x<=100"),
        ("bad_size", "multiples of 8"),
        ("exists", "--force"),
        ("bad_outputs", "--outputs"),
        ("incompatible", "does not fit"),
        ("onnx_without_engine", "--engine"),
        ("engine_without_trt", "TensorRT"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tiny_run, tmp_path, case, message):
    ckpt = str(tiny_run / "best.pt")
    out = str(tmp_path / "o.onnx")
    args = [ckpt, "--iters", "1", "-o", out, "--no-parity"]
    if case == "missing":
        args[0] = str(tmp_path / "none.pt")
    elif case == "corrupt":
        (tmp_path / "c.pt").write_bytes((tiny_run / "best.pt").read_bytes()[:1000])
        args[0] = str(tmp_path / "c.pt")
    elif case == "foreign":
        torch.save({"model": {}}, tmp_path / "f.pt")
        args[0] = str(tmp_path / "f.pt")
    elif case == "negative_iters":
        args[2] = "-1"
    elif case == "bad_size":
        args += ["--size", "60x64"]
    elif case == "exists":
        (tmp_path / "o.onnx").write_bytes(b"keep me")
    elif case == "bad_outputs":
        args += ["--outputs", "scores"]
    elif case == "incompatible":
        from disseg.train.checkpoint import load_checkpoint, save_checkpoint

        ck = load_checkpoint(tiny_run / "best.pt")
        ck["config"]["class_names"] = ck["config"]["class_names"][:3]
        save_checkpoint(tmp_path / "i.pt", {k: v for k, v in ck.items() if k not in ("format", "version")})
        args[0] = str(tmp_path / "i.pt")
    elif case in ("onnx_without_engine", "engine_without_trt"):
        run_cmd("dis-export", ckpt, "--iters", "0", "-o", str(tmp_path / "m.onnx"), "--no-parity", check=True)
        args = [str(tmp_path / "m.onnx")] + (["--engine"] if case == "engine_without_trt" else [])
        pytest.importorskip("onnx")
        try:
            import tensorrt  # noqa: F401

            pytest.skip("TensorRT is installed")
        except ImportError:
            pass
    proc = run_cmd("dis-export", *args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    if case == "exists":
        assert (tmp_path / "o.onnx").read_bytes() == b"keep me"
