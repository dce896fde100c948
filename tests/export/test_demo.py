"""README's first command, `dis-demo`, end to end (its --quick sizes): a real subprocess of our command."""

import json
import platform
import re
import subprocess

import cv2
import pytest

from tests.conftest import BIN, HAS_TORCH
from tests.test_quiet_output import FOREIGN

pytestmark = pytest.mark.skipif(not HAS_TORCH, reason="dis-demo trains: needs torch")


def test_quick_demo_trains_compares_exports_and_renders(tmp_path):
    out = tmp_path / "demo"
    # run where a user would, with a relative folder: our lines name paths, and the line-length check is about ours
    absent = tmp_path / "no-real-model.onnx"  # the real-photo section then says how to get the model
    proc = subprocess.run([str(BIN / "dis-demo"), "demo", "--quick", "--real-model", str(absent)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = (out / "report.md").read_text()
    first_lines = report.splitlines()[:3]
    assert first_lines[0].endswith("(smoke run)") and "not meaningful" in first_lines[2], first_lines
    assert "dis-data synth --preset hard" in report
    lines = [line for line in re.split(r"[\r\n]", proc.stdout + proc.stderr) if line.strip()]
    assert not [line for line in lines if FOREIGN.search(line)], "third-party output on the terminal"
    assert not [line for line in lines if len(line) > 200], "a line over 200 characters"
    estimate = re.search(r"the rest should take about ([0-9.]+) min at this pace", proc.stderr)
    assert estimate and float(estimate.group(1)) > 0, proc.stderr[-2000:]
    table = re.finditer(r"^\| (stage [^|]+?) \| (.+) \|$", report, re.M)
    rows = {m.group(1): [float(v) for v in m.group(2).split(" | ")] for m in table}
    assert list(rows) == ["stage 1", "stage 1 continued", "stage 2 (+ tag-only images)"]
    assert all(len(v) == 4 and all(0 <= x <= 100 for x in v) for v in rows.values())  # t = 0, 1, 3, 5
    delta = float(re.search(r"at t=0: ([+-][0-9.]+) points", report).group(1))
    assert delta == pytest.approx(rows["stage 2 (+ tag-only images)"][0] - rows["stage 1 continued"][0], abs=0.011)
    assert json.loads((out / "model.parity.json").read_text())["passed"]
    video = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 30 and int(video.get(cv2.CAP_PROP_FRAME_WIDTH)) == 2 * 64
    assert json.loads((out / "stats.json").read_text())["frames"] == 30
    assert re.search(r"total \d+", report)
    machine = re.search(r"^Machine: (.+?) \((\w+)", report, re.M)  # the figures name the CPU they were measured on
    assert machine and machine.group(2) == platform.machine(), report
    section = report[report.index("## A real photograph") :]
    assert f"No real model at {absent}" in " ".join(section.split()) and "npm pack" in section
