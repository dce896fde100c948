"""Results as data: dis-run --events (JSON Lines), the web view's /events (Server-Sent Events), labels.png and
scores.npy, held to the masks the same run wrote and to tests/events_keys.json."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.conftest import BIN, HAS_TORCH, SECRET, assert_stats_keys, one_line, run_cmd, wait_for

EVENT_KEYS = json.loads(Path(__file__).parents[1].joinpath("events_keys.json").read_text())


def moving_video(path: Path, frames: int = 24, size=(96, 64)) -> Path:
    """Scenes of the synthetic data set's validation split one after another (the data the test models are trained
    on, made without torch): class areas that rise and fall across frames, for any of the test models."""
    from disseg.train.synth import write_dataset

    scenes = path.with_name(path.stem + "_scenes")
    write_dataset(scenes, num_train=1, num_val=12, num_weak=0, size=64, seed=3)
    images = sorted((scenes / "JPEGImages").glob("val_*.jpg"))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, size)
    for i in range(frames):
        writer.write(cv2.resize(cv2.imread(str(images[i % len(images)])), size, interpolation=cv2.INTER_AREA))
    writer.release()
    return path


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_record_keys(records: list[dict]) -> None:
    """Every record has exactly its kind's keys (tests/events_keys.json), for both runtimes."""
    assert records
    for record in records:
        assert list(record) == EVENT_KEYS[record["type"]], record


def expected_crossings(frames: list[dict], threshold: float) -> list[tuple]:
    """The appeared/gone records the documented rule gives for these frame records."""
    out, before = [], set()
    for rec in frames:
        now = {c for c, a in rec["areas"].items() if a >= threshold}
        order = list(rec["areas"]) + sorted(before - set(rec["areas"]))
        out += [("appeared", rec["frame"], c) for c in order if c in now - before]
        out += [("gone", rec["frame"], c) for c in order if c in before - now]
        before = now
    return out


def check_against_masks(records: list[dict], masks: Path, threshold: float, class_names: list[str]) -> None:
    """Each frame record's areas are the shares of its own mask's pixels; the crossings follow the rule."""
    frames = [r for r in records if r["type"] == "frame"]
    pngs = sorted(masks.glob("*.png"))
    assert len(frames) == len(pngs) > 0
    for rec, png in zip(frames, pngs):
        labels = np.asarray(Image.open(png))
        counts = np.bincount(labels.reshape(-1), minlength=len(class_names))
        want = {class_names[c]: counts[c] / labels.size for c in np.flatnonzero(counts)}
        assert rec["areas"].keys() == want.keys()
        assert all(abs(rec["areas"][c] - want[c]) < 1e-5 for c in want)
        assert abs(sum(rec["areas"].values()) - 1) < 1e-4
    got = sorted((r["type"], r["frame"], r["class"]) for r in records if r["type"] != "frame")
    assert got == sorted(expected_crossings(frames, threshold))


def class_names(model: Path) -> list[str]:
    from disseg.runtime.contract import read_model_info

    return list(read_model_info(model).class_names)


def varying_threshold(records: list[dict]) -> float:
    """A threshold some class crosses both ways in these frames (the midpoint of the most varying class)."""
    frames = [r for r in records if r["type"] == "frame"]
    names = {c for r in frames for c in r["areas"]}
    spans = {c: [r["areas"].get(c, 0.0) for r in frames] for c in names}
    best = max(spans, key=lambda c: max(spans[c]) - min(spans[c]))
    assert max(spans[best]) > min(spans[best]), "the model labels every frame of the test video alike"
    return (max(spans[best]) + min(spans[best])) / 2


def test_events_file_matches_the_masks_and_the_threshold_rule(tiny_onnx, tmp_path):
    video = moving_video(tmp_path / "in.avi")
    first = tmp_path / "first.jsonl"
    run_cmd("dis-run", str(tiny_onnx), "--video", str(video), "--events", str(first), "--no-display", check=True)
    threshold = varying_threshold(read_events(first))
    events, masks, stats = tmp_path / "ev.jsonl", tmp_path / "masks", tmp_path / "stats.json"
    args = ["--video", str(video), "--events", str(events), "--event-min-area", str(threshold), "--masks", str(masks)]
    run_cmd("dis-run", str(tiny_onnx), *args, "--stats", str(stats), "--no-display", check=True)
    records = read_events(events)
    assert_record_keys(records)
    check_against_masks(records, masks, threshold, class_names(tiny_onnx))
    kinds = [r["type"] for r in records]
    assert "appeared" in kinds and "gone" in kinds
    frames = [r for r in records if r["type"] == "frame"]
    assert [r["frame"] for r in frames] == list(range(24))
    assert all(r["model"] == tiny_onnx.name and r["iterations"] == 3 and r["scene_tags"] is None for r in frames)
    assert all(b["captured"] >= a["captured"] for a, b in zip(frames, frames[1:]))
    summary = json.loads(stats.read_text())
    assert_stats_keys(summary)
    assert {k: summary["events"][k] for k in EVENT_KEYS["stats"]} == {k: kinds.count(k) for k in EVENT_KEYS["stats"]}


def test_events_to_stdout_are_pure_json_lines_with_scene_tags_and_redacted_sources(
    scene_tags_model, tmp_path, http_stream
):
    video = moving_video(tmp_path / "in.avi", frames=6)
    names = class_names(scene_tags_model)
    proc = run_cmd(
        "dis-run", str(scene_tags_model), "--source", str(video), "--source", http_stream, "--max-reconnects", "0",
        "--scene-tags", f"{names[0]},{names[1]}", "--scene-tags", "-", "--events", "-", "--no-display",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]  # nothing else on stdout
    assert_record_keys(records)
    assert SECRET not in proc.stdout + proc.stderr
    frames = [r for r in records if r["type"] == "frame"]
    assert sorted({r["stream"] for r in frames}) == [0, 1]
    assert all(r["scene_tags"] == {names[0]: 1.0, names[1]: 1.0} for r in frames if r["stream"] == 0)
    assert all(r["scene_tags"] is None for r in frames if r["stream"] == 1)
    assert {r["source"] for r in frames if r["stream"] == 1} == {re.sub(r":\w+@", ":***@", "rtsp " + http_stream)}
    assert re.search(rf"{len(frames)} frames from 2 streams", proc.stderr)  # the summary line went to stderr


def test_events_refused_in_one_line(tiny_onnx, tmp_path):
    video = moving_video(tmp_path / "in.avi", frames=2)
    (tmp_path / "dir").mkdir()
    proc = run_cmd("dis-run", str(tiny_onnx), "--video", str(video), "--events", str(tmp_path / "dir"))
    one_line(proc, 2, "--events", "is a folder")
    proc = run_cmd("dis-run", str(tiny_onnx), "--video", str(video), "--event-min-area", "1.5", "--events", "-")
    assert proc.returncode == 2 and "--event-min-area" in proc.stderr


def _serve(model, video: Path, *args) -> tuple[subprocess.Popen, str]:
    cmd = [str(BIN / "dis-run"), str(model), "--source", str(video), "--loop", "100000", "--serve", "127.0.0.1:0"]
    proc = subprocess.Popen([*cmd, *args], stderr=subprocess.PIPE, text=True)
    seen: list[str] = []
    wait_for(lambda: seen.append(proc.stderr.readline()) or "serving the live view at" in seen[-1], proc=proc,
             what="the serving line")  # fmt: skip
    return proc, re.search(r"http://\S+?/", seen[-1]).group(0)


def _sse(url: str, count: int, headers: dict | None = None) -> list[dict]:
    """`count` records of a Server-Sent Events stream, read as a browser's EventSource would."""
    records = []
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30) as response:
        assert response.headers["Content-Type"] == "text/event-stream"
        while len(records) < count:
            line = response.readline().decode()
            if line.startswith("data: "):
                records.append(json.loads(line[len("data: ") :]))
    return records


def test_web_view_serves_events_and_labels_with_its_token(tiny_onnx, tmp_path):
    proc, url = _serve(tiny_onnx, moving_video(tmp_path / "in.avi"), "--serve-token", "t0k")
    try:
        for path in ("events", "streams/0/labels.png", "streams/0/scores.npy"):
            with pytest.raises(urllib.error.HTTPError) as denied:
                urllib.request.urlopen(url + path, timeout=10)
            assert denied.value.code == 401
        records = _sse(url + "events?stream=0", 30, {"Authorization": "Bearer t0k"})
        assert_record_keys(records)
        frames = [r["frame"] for r in records if r["type"] == "frame"]
        assert len(frames) >= 10 and all(b > a for a, b in zip(frames, frames[1:]))  # in order, newest first lost
        assert all(r["stream"] == 0 for r in records)
        assert _sse(url + "events?stream=7&token=t0k", 0) == []  # a filter that matches nothing still answers
        png = urllib.request.urlopen(url + "streams/0/labels.png?token=t0k", timeout=10).read()
        labels = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
        assert labels.shape == (64, 96) and labels.dtype == np.uint8
        assert int(labels.max()) < len(class_names(tiny_onnx))
        with pytest.raises(urllib.error.HTTPError) as none:
            urllib.request.urlopen(url + "streams/0/scores.npy?token=t0k", timeout=10)
        assert none.value.code == 404 and b"outputs no scores" in none.value.read()
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(url + "streams/3/labels.png?token=t0k", timeout=10)
        assert missing.value.code == 404
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    assert proc.returncode == 143


@pytest.mark.skipif(not HAS_TORCH, reason="exports a model with a scores output")
def test_scores_npy_is_the_models_scores_and_labels_png_their_argmax(tiny_run, tmp_path):
    model = tmp_path / "scores.onnx"
    run_cmd("dis-export", str(tiny_run / "best.pt"), "--iters", "1", "--outputs", "labels,scores", "-o", str(model),
            check=True)  # fmt: skip
    still = tmp_path / "still.avi"
    writer = cv2.VideoWriter(str(still), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 64))
    frame = cv2.circle(np.full((64, 64, 3), 40, np.uint8), (32, 32), 20, (20, 190, 60), -1)
    for _ in range(4):
        writer.write(frame)
    writer.release()
    proc, url = _serve(model, still)
    try:
        wait_for(lambda: _fetch(url + "streams/0/scores.npy") is not None, proc=proc, what="a frame's scores")
        import io

        scores = np.load(io.BytesIO(_fetch(url + "streams/0/scores.npy")), allow_pickle=False)
        labels = cv2.imdecode(np.frombuffer(_fetch(url + "streams/0/labels.png"), np.uint8), cv2.IMREAD_UNCHANGED)
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    assert scores.shape == (len(class_names(model)), 64, 64) and scores.dtype == np.float32
    assert np.array_equal(scores.argmax(0).astype(np.uint8), labels)  # the model's size is the frame's here


def _fetch(url: str) -> bytes | None:
    try:
        return urllib.request.urlopen(url, timeout=10).read()
    except urllib.error.HTTPError as err:
        if err.code == 503:
            return None
        raise
