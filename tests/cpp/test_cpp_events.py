"""dis_run_cpp --events: the same records as dis-run's on the same video (every key of tests/events_keys.json, the
same areas, crossings and scene tags; only the capture times differ), the same stats counts, and standard output
left to the records."""

from __future__ import annotations

import json
import subprocess

from tests.conftest import BIN, assert_stats_keys, one_line
from tests.runtime.test_events import assert_record_keys, check_against_masks, class_names, moving_video, read_events


def _both(cpp_build, model, tmp_path, *args):
    """dis-run and dis_run_cpp with the same arguments; their (records, stats, masks folder)."""
    out = {}
    for name, exe in (("python", BIN / "dis-run"), ("cpp", cpp_build / "dis_run_cpp")):
        folder = tmp_path / name
        events, stats, masks = folder / "ev.jsonl", folder / "stats.json", folder / "masks"
        cmd = [str(exe), str(model), *map(str, args), "--events", str(events), "--stats", str(stats)]
        proc = subprocess.run([*cmd, "--masks", str(masks), "--no-display"], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        out[name] = (read_events(events), json.loads(stats.read_text()), masks)
    return out


def _without_time(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "captured"} for r in records]


def test_both_runtimes_write_the_same_records(cpp_build, tiny_onnx, tmp_path):
    video = moving_video(tmp_path / "in.avi")
    first = read_events(_first_pass(cpp_build, tiny_onnx, video, tmp_path))
    threshold = _midpoint(first)
    runs = _both(cpp_build, tiny_onnx, tmp_path, "--video", video, "--event-min-area", threshold)
    (py, py_stats, _), (cpp, cpp_stats, cpp_masks) = runs["python"], runs["cpp"]
    assert_record_keys(cpp)
    check_against_masks(cpp, cpp_masks, threshold, class_names(tiny_onnx))
    assert _without_time(cpp) == _without_time(py)
    assert any(r["type"] == "gone" for r in cpp)
    for stats in (py_stats, cpp_stats):
        assert_stats_keys(stats)
    assert {k: cpp_stats["events"][k] for k in ("frame", "appeared", "gone")} == {
        k: py_stats["events"][k] for k in ("frame", "appeared", "gone")
    }


def test_scene_tags_and_two_streams_in_both_runtimes(cpp_build, scene_tags_model, tmp_path):
    video = moving_video(tmp_path / "in.avi", frames=5)
    names = class_names(scene_tags_model)
    tags = ["--scene-tags", f"{names[1]},{names[2]}", "--scene-tags", "-"]
    runs = _both(cpp_build, scene_tags_model, tmp_path, "--source", video, "--source", video, *tags)
    py, cpp = runs["python"][0], runs["cpp"][0]
    key = lambda r: (r["stream"], r["frame"], r["type"], r.get("class") or "")  # noqa: E731 (streams interleave)
    assert sorted(_without_time(cpp), key=key) == sorted(_without_time(py), key=key)
    assert {json.dumps(r["scene_tags"]) for r in cpp if r["type"] == "frame"} == {
        json.dumps({names[0]: 1.0, names[1]: 1.0, names[2]: 1.0}),  # the background is always allowed
        "null",
    }


def test_events_to_stdout_and_refusals(cpp_build, tiny_onnx, tmp_path):
    video = moving_video(tmp_path / "in.avi", frames=4)
    exe = str(cpp_build / "dis_run_cpp")
    proc = subprocess.run([exe, str(tiny_onnx), "--video", str(video), "--events", "-"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert_record_keys(records)
    assert sum(r["type"] == "frame" for r in records) == 4 and "4 frames in" in proc.stderr
    (tmp_path / "dir").mkdir()
    proc = subprocess.run([exe, str(tiny_onnx), "--video", str(video), "--events", str(tmp_path / "dir")],
                          capture_output=True, text=True)  # fmt: skip
    one_line(proc, 2, "--events", "is a folder")
    proc = subprocess.run([exe, str(tiny_onnx), "--video", str(video), "--events", "-", "--event-min-area", "2"],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 2 and "--event-min-area" in proc.stderr


def _first_pass(cpp_build, model, video, tmp_path):
    events = tmp_path / "first.jsonl"
    cmd = [str(cpp_build / "dis_run_cpp"), str(model), "--video", str(video), "--events", str(events)]
    subprocess.run(cmd, check=True, capture_output=True)
    return events


def _midpoint(records: list[dict]) -> float:
    from tests.runtime.test_events import varying_threshold

    return varying_threshold(records)
