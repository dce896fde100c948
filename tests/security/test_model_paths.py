"""Models and repositories never make a command read or write outside where it was pointed: an ONNX model whose
external data leaves its folder ('../..', an absolute path, a symlink out) is one line, exit 2, in every command that
reads models and in both runtimes, before anything opens the named file; a model whose data lies beside it works
everywhere, and a Triton repository made from it carries the data along. A Triton model name is one path component
of Triton's characters, and an existing repository entry is kept without --force."""

from __future__ import annotations

import os
import subprocess

import cv2
import numpy as np
import pytest

from tests.conftest import one_line, run_cmd


def _external(tiny_onnx, folder, location: str | None = None):
    """tiny_onnx re-saved with its weights in `folder`/tiny.data, its location rewritten to `location` if given."""
    onnx = pytest.importorskip("onnx")
    from onnx.external_data_helper import convert_model_to_external_data

    folder.mkdir(exist_ok=True)
    model = onnx.load(str(tiny_onnx))
    convert_model_to_external_data(model, all_tensors_to_one_file=True, location="tiny.data", size_threshold=1024)
    path = folder / "model.onnx"
    onnx.save(model, str(path))
    if location is not None:
        proto = onnx.load(str(path), load_external_data=False)
        for tensor in proto.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location
        onnx.save(proto, str(path))
    return path


def _images(folder):
    folder.mkdir(exist_ok=True)
    for i in range(12):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((64, 64, 3), 20 * i, np.uint8))
    return folder


OUTSIDE = {"dotdot": "../../etc/passwd", "absolute": "/etc/passwd", "symlink": "link.data"}
COMMANDS = {
    "dis-run": lambda m, t: ["dis-run", m, "--images", t / "in", "--no-display", "--stats", t / "s.json"],
    "dis-export --deepstream": lambda m, t: ["dis-export", m, "--deepstream", t / "ds"],
    "dis-export --triton-repo": lambda m, t: ["dis-export", m, "--triton-repo", t / "repo"],
    "dis-calibrate": lambda m, t: ["dis-calibrate", m, "--images", t / "in", "--samples", "8", "-o", t / "q.onnx"],
}


@pytest.mark.parametrize("how", OUTSIDE)
@pytest.mark.parametrize("command", COMMANDS)
def test_external_data_outside_the_model_folder_is_refused(tiny_onnx, tmp_path, how, command):
    model = _external(tiny_onnx, tmp_path / "m", OUTSIDE[how])
    if how == "symlink":
        os.symlink("/etc/passwd", tmp_path / "m" / "link.data")
    _images(tmp_path / "in")
    proc = run_cmd(*map(str, COMMANDS[command](model, tmp_path)))
    one_line(proc, 2, "outside its folder")
    assert not any((tmp_path / name).exists() for name in ("ds", "repo", "q.onnx", "s.json"))


@pytest.mark.parametrize("how", OUTSIDE)
def test_the_doctor_names_external_data_outside(tiny_onnx, tmp_path, how):
    model = _external(tiny_onnx, tmp_path / "m", OUTSIDE[how])
    if how == "symlink":
        os.symlink("/etc/passwd", tmp_path / "m" / "link.data")
    proc = run_cmd("dis-doctor", str(model))  # a report: its verdict says the model cannot run, exit 1
    assert proc.returncode == 1 and "outside its folder" in proc.stdout and "Traceback" not in proc.stderr


@pytest.mark.parametrize("how", ["dotdot", "absolute"])
def test_external_data_outside_is_refused_in_cpp(cpp_build, tiny_onnx, tmp_path, how):
    model = _external(tiny_onnx, tmp_path / "m", OUTSIDE[how])
    cmd = [cpp_build / "dis_run_cpp", model, "--images", _images(tmp_path / "in"), "--no-display", "--stats",
           tmp_path / "s.json"]  # fmt: skip
    one_line(subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=120), 2, "outside its folder")


def test_external_data_beside_the_model_works_and_travels_into_the_triton_repo(tiny_onnx, tmp_path):
    model = _external(tiny_onnx, tmp_path / "m")
    images = _images(tmp_path / "in")
    direct = run_cmd("dis-run", str(model), "--images", str(images), "--no-display", "--masks", str(tmp_path / "a"))
    assert direct.returncode == 0, direct.stderr
    made = run_cmd("dis-export", str(model), "--triton-repo", str(tmp_path / "repo"))
    assert made.returncode == 0, made.stderr
    served = tmp_path / "repo" / "disseg" / "1"
    assert (served / "tiny.data").read_bytes() == (tmp_path / "m" / "tiny.data").read_bytes()
    copied = run_cmd("dis-run", str(served / "model.onnx"), "--images", str(images), "--no-display", "--masks",
                     str(tmp_path / "b"))  # fmt: skip
    assert copied.returncode == 0, copied.stderr
    for mask in sorted((tmp_path / "a").glob("*.png")):
        assert np.array_equal(cv2.imread(str(mask), -1), cv2.imread(str(tmp_path / "b" / mask.name), -1))


@pytest.mark.parametrize("name", ["..", ".", "...", "a/b", "x" * 129, "n\u00e4me", ""])
def test_a_triton_model_name_is_one_path_component(tiny_onnx, tmp_path, name):
    repo = tmp_path / "sub" / "repo"
    proc = run_cmd("dis-export", str(tiny_onnx), "--triton-repo", str(repo), "--model-name", name)
    one_line(proc, 2, "model name")
    assert not (tmp_path / "sub").exists() or not any((tmp_path / "sub").rglob("*.pbtxt"))


def test_an_existing_triton_entry_is_kept_without_force(tiny_onnx, tmp_path):
    repo = tmp_path / "repo"
    assert run_cmd("dis-export", str(tiny_onnx), "--triton-repo", str(repo)).returncode == 0
    config = repo / "disseg" / "config.pbtxt"
    config.write_text(config.read_text() + "# edited by hand\n")
    one_line(run_cmd("dis-export", str(tiny_onnx), "--triton-repo", str(repo)), 2, "--force")
    assert config.read_text().endswith("# edited by hand\n")
    assert run_cmd("dis-export", str(tiny_onnx), "--triton-repo", str(repo), "--force").returncode == 0
    assert not config.read_text().endswith("# edited by hand\n")
