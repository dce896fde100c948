"""Nothing lost, ever: every fault class of the output side with real files, real mounts (a small tmpfs for a full
disk, a read-only one) and real signals to real subprocesses of our commands. The C++ twin is
tests/cpp/test_cpp_faults.py.

- writes: a failed write leaves an existing file untouched, no temp file behind, one line naming the path and the
  reason, exit 1; a path unusable before the work starts is exit 2;
- signals: SIGINT and SIGTERM (and SIGHUP, but for dis-run, which reloads on it) finalize the outputs and the stats,
  exit 128 + the signal; dis-train saves a checkpoint that resumes exactly;
- names: masks never collide (names that differ by extension or by case);
- options: every numeric option of every command has finite bounds checked at parse time;
- model consistency: a graph whose outputs disagree with its metadata is refused at load;
- truncated video: reported in one warning line and in the stats file.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess

import click
import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from disseg.runtime.image import unique_names
from tests.conftest import BIN, HAS_TORCH, assert_stats_keys, interrupt_run, one_line, run_cmd, wait_for

needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="needs torch (a checkpoint or training)")


def _video(path, frames=40, size=64, fourcc="MJPG"):
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 30, (size, size))
    for _ in range(frames):
        writer.write(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    writer.release()
    return path


def _temp_files(folder):
    return sorted(p.name for p in folder.rglob(".*") if ".partial" in p.name or p.name.endswith(".tmp"))


def _frames(path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    return n


# --- writes -------------------------------------------------------------------------------------------------------


def test_full_disk_leaves_the_existing_video_untouched(tiny_onnx, tmp_path, small_disk):
    disk = small_disk("200k")
    clip = _video(tmp_path / "in.avi")
    first = run_cmd("dis-run", str(tiny_onnx), "--video", str(clip), "--output", str(disk / "out.mp4"), "--no-display")
    assert first.returncode == 0, first.stderr
    good = (disk / "out.mp4").read_bytes()
    assert _frames(disk / "out.mp4") == 40

    stats = tmp_path / "s.json"
    proc = run_cmd(
        "dis-run", str(tiny_onnx), "--video", str(clip), "--loop", "50", "--output", str(disk / "out.mp4"),
        "--no-display", "--stats", str(stats),
    )  # fmt: skip
    one_line(proc, 1, str(disk / "out.mp4"), "ENOSPC", "nothing was replaced")
    assert (disk / "out.mp4").read_bytes() == good  # the good video is still there, byte for byte
    assert _temp_files(disk) == []  # and nothing half-written beside it
    summary = json.loads(stats.read_text())  # the stats of what was produced, on a disk with room
    assert_stats_keys(summary)
    assert summary["frames"] > 40


def test_full_disk_for_masks_keeps_the_video_and_every_mask_whole(tiny_onnx, tmp_path, small_disk):
    disk = small_disk("128k")  # 4 KiB pages: room for about 30 masks
    clip = _video(tmp_path / "in.avi", frames=200)
    proc = run_cmd(
        "dis-run", str(tiny_onnx), "--video", str(clip), "--masks", str(disk / "masks"),
        "--output", str(tmp_path / "out.avi"), "--no-display", "--stats", str(tmp_path / "s.json"),
    )  # fmt: skip
    one_line(proc, 1, "ENOSPC", str(disk / "masks"))
    masks = sorted((disk / "masks").glob("*.png"))
    assert 0 < len(masks) < 200
    for mask in masks:  # every mask there is complete
        assert np.asarray(Image.open(mask)).shape == (64, 64)
    assert _temp_files(disk) == []
    summary = json.loads((tmp_path / "s.json").read_text())
    # the video on the other disk was finalized: it holds every frame whose mask was written (the writer stopped at
    # the failed mask; frames segmented after it are counted in the stats but written nowhere)
    assert _frames(tmp_path / "out.avi") == len(masks) <= summary["frames"]


@needs_torch
def test_full_disk_for_an_export_and_a_checkpoint(tiny_run, tiny_data, tmp_path, small_disk):
    disk = small_disk("512k")
    (disk / "model.onnx").write_bytes(b"the previous export")
    proc = run_cmd("dis-export", str(tiny_run / "best.pt"), "-o", str(disk / "model.onnx"), "--force")
    one_line(proc, 1, str(disk / "model.onnx"), "ENOSPC")
    assert (disk / "model.onnx").read_bytes() == b"the previous export"
    assert _temp_files(disk) == []

    run = disk / "run"  # torch.save reports a full disk in its own words; the line still names the reason
    proc = run_cmd("dis-train", "--data", str(tiny_data), "--out", str(run), *_TINY, "--epochs", "1")
    one_line(proc, 1, ".pt", "ENOSPC")  # best.pt, the first checkpoint written
    assert _temp_files(disk) == []


@pytest.mark.parametrize(
    "case",
    ["read-only --output", "read-only --masks", "--masks is a file", "--stats is a folder", "--stats under a file"],
)
def test_unusable_outputs_are_refused_before_any_work(tiny_onnx, tmp_path, small_disk, case):
    clip = _video(tmp_path / "in.avi", frames=2)
    (tmp_path / "a-file").write_text("x")
    args = {
        "read-only --output": lambda: ["--output", str(small_disk(ro=True) / "out.mp4")],
        "read-only --masks": lambda: ["--masks", str(small_disk(ro=True) / "masks")],
        "--masks is a file": lambda: ["--masks", str(tmp_path / "a-file")],
        "--stats is a folder": lambda: ["--stats", str(tmp_path)],
        "--stats under a file": lambda: ["--stats", str(tmp_path / "a-file" / "s.json")],
    }[case]()
    proc = run_cmd("dis-run", str(tiny_onnx), "--video", str(clip), "--no-display", *args)
    line = one_line(proc, 2, args[0])
    assert ("EROFS" in line) == case.startswith("read-only")
    assert "frames in" not in proc.stdout  # refused up front: nothing ran


@needs_torch
@pytest.mark.parametrize("command", ["dis-export -o", "dis-eval --json", "dis-data synth", "dis-train --out"])
def test_every_command_refuses_an_unusable_output_up_front(tiny_run, tiny_data, tmp_path, small_disk, command):
    ro = small_disk(ro=True)
    (tmp_path / "a-file").write_text("x")
    args = {
        "dis-export -o": ["dis-export", str(tiny_run / "best.pt"), "-o", str(ro / "m.onnx")],
        "dis-eval --json": ["dis-eval", str(tiny_run / "best.pt"), "--data", str(tiny_data), "--json",
                            str(ro / "e.json")],
        "dis-data synth": ["dis-data", "synth", str(tmp_path / "a-file")],
        "dis-train --out": ["dis-train", "--data", str(tiny_data), "--out", str(tmp_path / "a-file")],
    }[command]  # fmt: skip
    proc = run_cmd(*args)
    one_line(proc, 2, "EROFS" if str(ro) in " ".join(args) else "is a file")


# --- signals ------------------------------------------------------------------------------------------------------


def check_stopped_cleanly(exe, model, tmp_path, sig) -> None:
    """`sig` to a running `exe` (dis-run or dis_run_cpp) ends it with 128 + sig, the video playable to its last
    frame, every mask there, the stats complete, no temp file left."""
    clip = _video(tmp_path / "in.avi", frames=20)
    code, err, summary, written, masks = interrupt_run(
        exe, model, clip, tmp_path / "out.mp4", tmp_path / "s.json", sig=sig
    )
    assert code == 128 + sig, err
    assert f"interrupted ({signal.Signals(sig).name})" in err
    assert_stats_keys(summary)
    assert summary["interrupted"] is True and summary["frames"] > 0
    assert written == masks == summary["frames"]
    assert _temp_files(tmp_path) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])  # SIGHUP reloads dis-run (tests/service)
def test_stop_signals_finalize_video_masks_and_stats(tiny_onnx, tmp_path, sig):
    check_stopped_cleanly(BIN / "dis-run", tiny_onnx, tmp_path, sig)


_TINY = ["--stages", "2", "--size", "64", "--batch", "4", "--optimizer", "adamw", "--step-size", "20"]


@needs_torch
def test_sigterm_to_dis_train_saves_a_checkpoint_that_resumes_exactly(tiny_data, tmp_path):
    import torch

    from disseg.train.checkpoint import load_checkpoint

    args = ["--data", str(tiny_data), *_TINY, "--epochs", "2", "--steps-per-epoch", "12", "--seed", "5"]
    run_cmd("dis-train", *args, "--out", str(tmp_path / "straight"), check=True)

    stopped = tmp_path / "stopped"
    proc = subprocess.Popen(
        [str(BIN / "dis-train"), *args, "--out", str(stopped)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL
    )
    seen: list[str] = []
    wait_for(lambda: seen.append(proc.stderr.readline().decode()) or "training epochs" in seen[-1], proc=proc,
             what="the training line")  # fmt: skip
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=300)[1].decode()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "interrupted (SIGTERM)" in err and "Traceback" not in err
    ckpt = load_checkpoint(stopped / "last.pt")
    partial = ckpt["partial_epoch"]
    assert partial["epoch"] == 0 and 1 <= partial["done"] < 12  # stopped inside the first epoch, at a step

    run_cmd("dis-train", *args, "--out", str(stopped), "--resume", check=True)
    a, b = load_checkpoint(tmp_path / "straight" / "last.pt"), load_checkpoint(stopped / "last.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    losses = lambda c: [{k: v for k, v in e.items() if k != "seconds"} for e in c["history"]]  # noqa: E731
    assert losses(a) == losses(b) and b["partial_epoch"] is None


@needs_torch
def test_training_that_diverges_stops_with_one_line_and_writes_no_nan_checkpoint(tiny_data, tmp_path):
    out = tmp_path / "run"
    # ten refinement steps of 10^6 inside the training loss (--train-through) send the features to Inf at once
    proc = run_cmd("dis-train", "--data", str(tiny_data), "--out", str(out), *_TINY, "--epochs", "1",
                   "--train-through", "10", "--step-size", "1000000")  # fmt: skip
    one_line(proc, 1, "not finite")
    assert not (out / "last.pt").exists() and not (out / "best.pt").exists()


# --- names --------------------------------------------------------------------------------------------------------


def test_unique_names_rule():
    from pathlib import Path

    paths = [Path(p) for p in ("x/a.JPG", "x/a.jpg", "x/a.png", "x/b.png", "y/b.jpg.png", "y/c.png", "z/c.png")]
    assert unique_names(paths) == ["a.JPG", "a.jpg-2", "a.png", "b", "b.jpg", "c.png", "c.png-2"]
    assert unique_names([Path("street.jpg"), Path("Street.PNG")]) == ["street.jpg", "Street.PNG"]


def test_masks_of_names_that_differ_by_extension_or_case_never_collide(tiny_onnx, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name in ("a.jpg", "a.JPG", "a.png", "b.png"):
        cv2.imwrite(str(folder / name), rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
    proc = run_cmd("dis-run", str(tiny_onnx), "--images", str(folder), "--masks", str(tmp_path / "m"), "--no-display")
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert names == ["a.JPG.png", "a.jpg-2.png", "a.png.png", "b.png"]  # 4 frames in, 4 masks out
    assert len({n.lower() for n in names}) == 4  # distinct even where case is ignored


# --- options ------------------------------------------------------------------------------------------------------


def _commands():
    """(name, the command a console script runs, the words before the options, the command whose options)."""
    from disseg.runtime.cli import bench_cli, run_cli
    from disseg.runtime.doctor import doctor_cli

    commands = [(n, c, [], c) for n, c in (("dis-run", run_cli), ("dis-bench", bench_cli), ("dis-doctor", doctor_cli))]
    if HAS_TORCH:
        from disseg.calibration.cli import calibrate_cli
        from disseg.export.cli import export_cli
        from disseg.export.demo import demo_cli
        from disseg.train.cli import data_cli, eval_cli, train_cli

        for name, command in (("dis-export", export_cli), ("dis-calibrate", calibrate_cli), ("dis-demo", demo_cli),
                              ("dis-train", train_cli), ("dis-eval", eval_cli)):  # fmt: skip
            commands.append((name, command, [], command))
        commands += [("dis-data", data_cli, [n], c) for n, c in data_cli.commands.items()]
    return commands


def _numeric_options():
    for name, root, words, command in _commands():
        for param in command.params:
            if isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType)):
                yield name, root, words, command, param


def _required(command, skip) -> list[str]:
    """Placeholder values for the command's required arguments and options, so the option under test is what fails."""
    args = []
    for param in command.params:
        if param is skip or not param.required:
            continue
        args += ["x"] if isinstance(param, click.Argument) else [param.opts[0], "x"]
    return args


def test_every_numeric_option_has_finite_bounds():
    found = list(_numeric_options())
    assert len(found) >= (40 if HAS_TORCH else 9)
    for name, _, _, _, param in found:
        low, high = getattr(param.type, "min", None), getattr(param.type, "max", None)
        assert low is not None and high is not None, f"{name} {param.opts[0]}: {param.type} is unbounded"
        assert math.isfinite(low) and math.isfinite(high), f"{name} {param.opts[0]}"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e30", "-1e30", "99999999999"])
def test_every_numeric_option_refuses_values_out_of_sense_in_one_line(value):
    runner = CliRunner()
    for name, root, words, command, param in _numeric_options():
        result = runner.invoke(root, [*words, param.opts[0], value, *_required(command, param)], prog_name=name)
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2, (name, param.opts[0], value, result.output)
        assert len(lines) == 1 and lines[0].startswith("error: ") and param.opts[0] in lines[0], (name, lines)


def test_option_errors_are_one_line_in_a_real_process(tiny_onnx, tmp_path):
    proc = run_cmd("dis-run", str(tiny_onnx), "--video", "x.avi", "--alpha", "nan")
    assert one_line(proc, 2, "--alpha", "not a finite number").endswith("(see 'dis-run --help')")
    proc = run_cmd("dis-run", str(tiny_onnx), "--video", "x.avi", "--threads", "100000")
    one_line(proc, 2, "--threads")


# --- model consistency --------------------------------------------------------------------------------------------


def _fewer_classes(model, tmp_path, keep: int = 7, labels_only: bool = False):
    """`model` with its metadata naming only `keep` of its 8 classes (names and palette); `labels_only`: with only its
    labels output too, a model that lies in a way no output shape can show (the labels' values are the witness)."""
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(model))
    if labels_only:
        kept = [o for o in proto.graph.output if o.name == "labels"]
        del proto.graph.output[:]
        proto.graph.output.extend(kept)
    for prop in proto.metadata_props:
        if labels_only and prop.key.endswith(".outputs"):
            prop.value = json.dumps(["labels"])
        value = json.loads(prop.value) if prop.value[:1] in "[{" else None
        if isinstance(value, list) and len(value) == 8:  # the class names and the palette
            prop.value = json.dumps(value[:keep])
    out = tmp_path / ("lying.onnx" if labels_only else "fewer.onnx")
    onnx.save(proto, str(out))
    return out


def labels_only_lying(model, tmp_path, hidden: bool = False):
    """A labels-only model whose metadata names 2 of its 8 classes; `hidden`: with two Neg ops between the argmax and
    the logits, which hide the class count from a reading of the graph (only the labels' values show it), and a bias
    that makes class 5 win everywhere, so every frame shows the lie whatever the test model learned."""
    out = _fewer_classes(model, tmp_path, keep=2, labels_only=True)
    if hidden:
        onnx = pytest.importorskip("onnx")
        proto = onnx.load(str(out))
        argmax = next(n for n in proto.graph.node if n.op_type == "ArgMax")
        source = argmax.input[0]
        bias = np.zeros((1, 8, 1, 1), np.float32)
        bias[0, 5] = 1e4
        proto.graph.initializer.append(onnx.numpy_helper.from_array(bias, "hide_bias"))
        negs = [onnx.helper.make_node("Neg", [source], ["hide1"]), onnx.helper.make_node("Neg", ["hide1"], ["hide2"]),
                onnx.helper.make_node("Add", ["hide2", "hide_bias"], ["hide3"])]  # fmt: skip
        argmax.input[0] = "hide3"
        at = list(proto.graph.node).index(argmax)
        for node in reversed(negs):
            proto.graph.node.insert(at, node)
        onnx.save(proto, str(out))
    return out


@pytest.mark.parametrize(
    "make, said",
    [("fewer", "'tags' output has 8 classes, its metadata names 7"),  # an output's shape shows it
     ("labels only", "'labels' output has 8 classes, its metadata names 2")],  # only the argmax behind labels does
)  # fmt: skip
def test_a_model_whose_graph_has_more_classes_than_its_metadata_is_refused(tiny_onnx, tmp_path, make, said):
    model = _fewer_classes(tiny_onnx, tmp_path) if make == "fewer" else labels_only_lying(tiny_onnx, tmp_path)
    clip = _video(tmp_path / "in.avi", frames=2)
    proc = run_cmd("dis-run", str(model), "--video", str(clip), "--stats", str(tmp_path / "s.json"), "--no-display")
    one_line(proc, 2, said)
    assert not (tmp_path / "s.json").exists()


# --- truncated video ----------------------------------------------------------------------------------------------


def check_truncation_reported(run, tmp_path) -> None:
    """`run(video, stats)` (dis-run or dis_run_cpp) on an AVI cut to 60 %: exit 0, one warning line with the frames
    read and declared, the same in the stats; on the whole file, neither."""
    whole = _video(tmp_path / "whole.avi", frames=30)
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])
    proc = run(cut, tmp_path / "s.json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    read = summary["frames"]
    assert 0 < read < 30 and summary["truncated"] == {"frames_read": read, "frames_declared": 30}
    warnings = [line for line in proc.stderr.splitlines() if "ended early" in line]
    assert warnings == [
        f"{cut} ended early: {read} of the 30 frames its header declares were readable (cut short or damaged)"
    ]
    proc = run(whole, tmp_path / "w.json")
    assert json.loads((tmp_path / "w.json").read_text())["truncated"] is None and "ended early" not in proc.stderr


def test_a_video_cut_short_is_reported_in_one_line_and_in_the_stats(tiny_onnx, tmp_path):
    run = lambda video, stats: run_cmd("dis-run", str(tiny_onnx), "--video", str(video), "--stats", str(stats),  # noqa: E731
                                       "--no-display")  # fmt: skip
    check_truncation_reported(run, tmp_path)


def test_a_lie_the_graph_hides_stops_at_the_first_frame_that_shows_it(tiny_onnx, tmp_path):
    model = labels_only_lying(tiny_onnx, tmp_path, hidden=True)
    clip = _video(tmp_path / "in.avi", frames=20)
    proc = run_cmd("dis-run", str(model), "--video", str(clip), "--masks", str(tmp_path / "m"), "--stats",
                   str(tmp_path / "s.json"), "--no-display")  # fmt: skip
    one_line(proc, 1, "the model produced class", "its metadata names 2 classes")
    assert (tmp_path / "s.json").is_file()  # exit 1 still writes the stats of what was produced
