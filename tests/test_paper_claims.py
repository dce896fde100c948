"""benchmarks/paper_claims.py's scoring and report, on eval files written the way dis-eval writes them (the
training it drives is our commands, tested elsewhere; its full run takes hours)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "paper_claims.py"
spec = importlib.util.spec_from_file_location("paper_claims", SCRIPT)
pc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pc)


def test_lookalike_share_counts_confusions_within_a_group():
    # classes: 0 background, group 0 = {1, 2, 3}, group 1 = {4, 5, 6}
    confusion = [[0] * 7 for _ in range(7)]
    confusion[1][2] = 30  # look-alike
    confusion[4][6] = 10  # look-alike
    confusion[1][4] = 20  # another group
    confusion[2][0] = 99  # to background: not an object confusion
    confusion[3][3] = 500  # right
    assert pc.lookalike_share(confusion, 3) == pytest.approx(100 * 40 / 60)


def test_paired_differences_and_their_spread():
    figures = {"a": [40.0, 30.0, 35.0], "b": [44.0, 33.5, 38.0], "c": [40.5, 29.0, 35.9]}
    d = pc.diff(figures, "a", "b")
    assert d["mean"] == pytest.approx(3.5, abs=0.01) and d["values"] == [4.0, 3.5, 3.0] and d["exceeds_spread"]
    assert not pc.diff(figures, "a", "c")["exceeds_spread"]  # +0.5, -1.0, +0.9: within the noise


def _write_seed(d: Path, base: float) -> None:
    def rows(miou: float, weak: bool = False) -> dict:
        out = []
        for t in pc.T:
            row = {"iters": t, "miou": miou - 0.1 * t, "pixel_acc": 95.0, "tag_f1": 30.0 + t,
                   "confusion": [[9, 1, 2], [1, 50, 3], [0, 4, 60]]}  # fmt: skip
            if weak:
                row["input_tag_f1"] = 68.0
            out.append(row)
        return {"results": out}

    d.mkdir(parents=True)
    for m in pc.MODELS:
        gain = float(m.removeprefix("s2_t")) if m.startswith("s2_t") else 0.0
        (d / f"{m}.val.json").write_text(json.dumps(rows(base + gain)))
    (d / "s1.weak.json").write_text(json.dumps(rows(base, weak=True)))
    for step in pc.STEP_SIZES:
        (d / f"s2_t{pc.DEFAULT_T_TRAIN}.step{step}.json").write_text(json.dumps(rows(base)))


def test_report_holds_every_table_with_means_over_seeds(tmp_path):
    dirs = [tmp_path / "seed0", tmp_path / "seed1"]
    _write_seed(dirs[0], 40.0)
    _write_seed(dirs[1], 30.0)
    figures = pc.collect(dirs)
    assert figures["s1.t0.miou"] == [40.0, 30.0] and figures["weak.input_tag_f1"] == [68.0, 68.0]
    text = pc.markdown(figures, [0, 1], {"text": "test budget"})
    assert "test budget" in text and "35.00 ± 7.07" in text  # stage 1 at t=0 over the two seeds
    for t_train in pc.T_TRAIN:
        assert f"\n| {t_train} | " in text  # the t_train x t_test grid has a row per t_train
    pc.plot(figures, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 10_000
