"""The paper's claims measured on `dis-data synth --preset hard`, over seeds.

    python benchmarks/paper_claims.py [--work runs/paper] [--seeds 0,1,2]
        -> benchmarks/results/paper_claims.{json,md,png}

Per seed: a data set, a stage-1 model, then from it the same number of steps of (a) stage 1 continued,
(b) stage 1 continued with the loss taken after 3 refinement steps (--train-through 3: do heads trained on
refined features make refinement pay?) and (c) stage 2 with pseudo labels made with t_train = 0, 1, 3, 5, 10
refinement steps. Every model is scored on the
validation split at t_test = 0, 1, 3, 5 (mIoU, tag F1, confusion), the stage-1 model also on the tag-only
split with its noisy tags in the energy (tag cleaning), and the stage-2 model at several step sizes.
Each step runs our commands as subprocesses and is skipped when its output exists, so a killed run resumes.
Scores come from each run's last.pt (no model is selected on the split it is scored on).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from disseg.runtime.atomic import atomic_write, atomic_write_text

T = (0, 1, 3, 5)  # t_test, and t on the tag-only split
T_TRAIN = (0, 1, 3, 5, 10)  # refinement steps that make stage-2 pseudo labels
STEP_SIZES = (10, 30, 100, 300)
TRAIN_THROUGH = 3  # explanation 2: stage 1 continued with the loss taken after 3 refinement steps
MODELS = ("s1", "s1c", f"s1c_through{TRAIN_THROUGH}", *(f"s2_t{t}" for t in T_TRAIN))
DEFAULT_T_TRAIN = 10  # the stage-2 model the headline rows use: dis-train's --iters-train default


def run(cmd: list[str], done: Path, log: Path) -> None:
    """Run `cmd` unless it completed before (a `.complete` marker beside `done`); a training run that was killed
    (its last.pt written, no marker) resumes exactly where it stopped."""
    marker = done.with_name(done.name + ".complete")
    if marker.exists():
        return
    if cmd[0] == "dis-train" and done.exists():
        cmd = [*cmd, "--resume"]
    started = time.time()
    with log.open("a") as f:
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT)
    marker.touch()
    print(f"{time.time() - started:7.1f} s  {' '.join(cmd[:3])} -> {done}", flush=True)


def train_seed(work: Path, seed: int, a: argparse.Namespace) -> Path:
    d = work / f"seed{seed}"
    d.mkdir(parents=True, exist_ok=True)
    log, data = d / "log.txt", d / "data"
    run(["dis-data", "synth", str(data), "--preset", "hard", "--seed", str(seed)], data / "classes.txt", log)
    common = ["--data", str(data), "--seed", str(seed), "--steps-per-epoch", str(a.steps_per_epoch)]
    run(
        ["dis-train", *common, "--out", str(d / "s1"), "--stages", "2", "--size", "128", "--epochs", str(a.epochs1)],
        d / "s1" / "last.pt",
        log,
    )
    more = [
        *common,
        "--init",
        str(d / "s1" / "last.pt"),
        "--size",
        "128",
        "--epochs",
        str(a.epochs2),
        "--lr",
        str(a.lr2),
    ]
    run(["dis-train", *more, "--stage", "1", "--out", str(d / "s1c")], d / "s1c" / "last.pt", log)
    through = d / f"s1c_through{TRAIN_THROUGH}"
    run(
        ["dis-train", *more, "--stage", "1", "--train-through", str(TRAIN_THROUGH), "--out", str(through)],
        through / "last.pt",
        log,
    )
    for t in T_TRAIN:
        run(
            ["dis-train", *more, "--stage", "2", "--iters-train", str(t), "--out", str(d / f"s2_t{t}")],
            d / f"s2_t{t}" / "last.pt",
            log,
        )
    return d


def score_seed(d: Path) -> None:
    log, data, iters = d / "log.txt", str(d / "data"), ",".join(map(str, T))
    for m in MODELS:
        run(
            ["dis-eval", str(d / m / "last.pt"), "--data", data, "--iters", iters, "--json", str(d / f"{m}.val.json")],
            d / f"{m}.val.json",
            log,
        )
    run(
        [
            "dis-eval",
            str(d / "s1" / "last.pt"),
            "--data",
            data,
            "--split",
            "weak",
            "--iters",
            iters,
            "--json",
            str(d / "s1.weak.json"),
        ],
        d / "s1.weak.json",
        log,
    )
    for step in STEP_SIZES:
        out = d / f"s2_t{DEFAULT_T_TRAIN}.step{step}.json"
        run(
            [
                "dis-eval",
                str(d / f"s2_t{DEFAULT_T_TRAIN}" / "last.pt"),
                "--data",
                data,
                "--iters",
                iters,
                "--step-size",
                str(step),
                "--json",
                str(out),
            ],
            out,
            log,
        )


def lookalike_share(confusion: list[list[int]], group_size: int) -> float:
    """Of the pixels of object classes predicted as another object class, the share that went to a look-alike
    (a class of the same group: classes 1 + g * group_size ... are one group)."""
    same = other = 0
    for truth, row in enumerate(confusion):
        for pred, n in enumerate(row):
            if truth == pred or truth == 0 or pred == 0:
                continue
            if (truth - 1) // group_size == (pred - 1) // group_size:
                same += n
            else:
                other += n
    return 100.0 * same / max(1, same + other)


def collect(dirs: list[Path]) -> dict:
    """{figure name: [value per seed]}."""
    from disseg.train.synth import HARD_SCENES

    figures: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        figures.setdefault(name, []).append(value)

    for d in dirs:
        for m in MODELS:
            rows = {r["iters"]: r for r in json.loads((d / f"{m}.val.json").read_text())["results"]}
            for t in T:
                add(f"{m}.t{t}.miou", rows[t]["miou"])
                add(f"{m}.t{t}.tag_f1", rows[t]["tag_f1"])
            add(f"{m}.t0.pixel_acc", rows[0]["pixel_acc"])
            add(f"{m}.t0.lookalike_share", lookalike_share(rows[0]["confusion"], len(HARD_SCENES)))
        weak = {r["iters"]: r for r in json.loads((d / "s1.weak.json").read_text())["results"]}
        add("weak.input_tag_f1", weak[0]["input_tag_f1"])
        for t in T:
            add(f"weak.t{t}.tag_f1", weak[t]["tag_f1"])
            add(f"weak.t{t}.miou", weak[t]["miou"])
        for step in STEP_SIZES:
            rows = {
                r["iters"]: r for r in json.loads((d / f"s2_t{DEFAULT_T_TRAIN}.step{step}.json").read_text())["results"]
            }
            for t in T:
                add(f"step{step}.t{t}.miou", rows[t]["miou"])
    return figures


def stats(values: list[float]) -> dict:
    return {
        "mean": round(statistics.fmean(values), 2),
        "sd": round(statistics.stdev(values), 2) if len(values) > 1 else 0.0,
        "values": [round(v, 2) for v in values],
    }


def diff(figures: dict, a: str, b: str) -> dict:
    """b - a per seed (paired: same data and stage-1 model), and whether the mean exceeds twice its spread."""
    deltas = [y - x for x, y in zip(figures[a], figures[b])]
    s = stats(deltas)
    s["exceeds_spread"] = abs(s["mean"]) > 2 * s["sd"] / max(1, len(deltas)) ** 0.5 if len(deltas) > 1 else False
    return s


def cell(s: dict) -> str:
    return f"{s['mean']:.2f} ± {s['sd']:.2f}"


def _delta(d: dict) -> str:
    return f"{d['mean']:+.2f} ± {d['sd']:.2f}{' *' if d['exceeds_spread'] else ''}"


def _stages_table(figures: dict, f: dict) -> list[str]:
    lines = [
        "**Stages** (validation mIoU at t_test = 0; Δ paired per seed, * = |mean Δ| > 2 standard errors):",
        "",
        "| model | mIoU | pixel acc | tag F1 | look-alike share of object confusions (%) | Δ mIoU vs stage 1 "
        "continued |",
        "|---|---|---|---|---|---|",
    ]
    for m, name in (
        ("s1", "stage 1"),
        ("s1c", "stage 1 continued"),
        (f"s2_t{DEFAULT_T_TRAIN}", f"stage 2 (t_train={DEFAULT_T_TRAIN})"),
    ):
        delta = _delta(diff(figures, "s1c.t0.miou", f"{m}.t0.miou")) if m != "s1c" else ""
        lines.append(
            f"| {name} | {cell(f[f'{m}.t0.miou'])} | {cell(f[f'{m}.t0.pixel_acc'])} | {cell(f[f'{m}.t0.tag_f1'])} | "
            f"{cell(f[f'{m}.t0.lookalike_share'])} | {delta} |"
        )
    return lines


def _refinement_tables(figures: dict, f: dict) -> list[str]:
    """Test-time refinement per model, t_train x t_test, and the step size."""
    lines = [
        "**Test-time refinement** (validation mIoU / tag F1 at t_test; Δ = t_test 5 − t_test 0):",
        "",
        "| model | " + " | ".join(f"t={t}" for t in T) + " | Δ mIoU (t=5 − t=0) |",
        "|---|" + "---|" * (len(T) + 1),
    ]
    for m in MODELS:
        lines.append(
            f"| {m} | "
            + " | ".join(f"{cell(f[f'{m}.t{t}.miou'])} / {f[f'{m}.t{t}.tag_f1']['mean']:.1f}" for t in T)
            + f" | {_delta(diff(figures, f'{m}.t0.miou', f'{m}.t5.miou'))} |"
        )
    lines += [
        "",
        "**t_train × t_test** (stage-2 validation mIoU; rows: refinement steps that made the pseudo labels):",
        "",
        "| t_train | " + " | ".join(f"t_test={t}" for t in T) + " |",
        "|---|" + "---|" * len(T),
    ]
    lines += [f"| {tt} | " + " | ".join(cell(f[f"s2_t{tt}.t{t}.miou"]) for t in T) + " |" for tt in T_TRAIN]
    lines += [
        "",
        f"**Step size** (stage 2, t_train={DEFAULT_T_TRAIN}; validation mIoU):",
        "",
        "| step size | " + " | ".join(f"t={t}" for t in T) + " |",
        "|---|" + "---|" * len(T),
    ]
    lines += [f"| {step} | " + " | ".join(cell(f[f"step{step}.t{t}.miou"]) for t in T) + " |" for step in STEP_SIZES]
    return lines


def _tag_cleaning_table(figures: dict, f: dict) -> list[str]:
    lines = [
        "**Tag cleaning** on the tag-only split (stage-1 model, noisy tags in the energy):",
        "",
        "| | tag F1 | pseudo-label mIoU |",
        "|---|---|---|",
        f"| noisy input tags | {cell(f['weak.input_tag_f1'])} | |",
    ]
    lines += [f"| after t={t} | {cell(f[f'weak.t{t}.tag_f1'])} | {cell(f[f'weak.t{t}.miou'])} |" for t in T]
    return lines + ["", f"Δ tag F1 (after t=5 − input): {_delta(diff(figures, 'weak.input_tag_f1', 'weak.t5.tag_f1'))}"]


def markdown(figures: dict, seeds: list[int], budget: dict) -> str:
    f = {k: stats(v) for k, v in figures.items()}
    lines = [
        f"Hard preset, {len(seeds)} seeds ({', '.join(map(str, seeds))}); mean ± sd over seeds. Budget: "
        f"{budget['text']}.",
        "",
    ]
    for table in (_stages_table, _refinement_tables, _tag_cleaning_table):
        lines += [*table(figures, f), ""]
    return "\n".join(lines[:-1]) + "\n"


def plot(figures: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for m in MODELS:
        means = [statistics.fmean(figures[f"{m}.t{t}.miou"]) for t in T]
        sds = [statistics.stdev(figures[f"{m}.t{t}.miou"]) if len(figures[f"{m}.t{t}.miou"]) > 1 else 0 for t in T]
        left.errorbar(T, means, yerr=sds, marker="o", capsize=3, label=m)
    left.set(
        xlabel="t_test (refinement steps)",
        ylabel="validation mIoU (%)",
        title="hard preset, mean ± sd over seeds",
        xticks=T,
    )
    left.legend(fontsize=8)
    weak = [statistics.fmean(figures["weak.input_tag_f1"])] + [
        statistics.fmean(figures[f"weak.t{t}.tag_f1"]) for t in T
    ]
    right.bar(["input"] + [f"t={t}" for t in T], weak, color=["grey"] + ["tab:blue"] * len(T))
    right.set(ylabel="tag F1 (%)", title="tag cleaning on the tag-only split")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)


def samples(data: Path, path: Path, count: int = 6) -> None:
    """A picture of the first labelled images of a data set, each beside its mask in the palette."""
    import cv2
    import numpy as np
    from PIL import Image

    from disseg.runtime.palette import voc_palette

    palette = voc_palette(256)[:, ::-1]  # BGR
    tiles = []
    for i in range(count):
        image = cv2.imread(str(data / "JPEGImages" / f"train_{i:05d}.jpg"))
        mask = np.array(Image.open(data / "SegmentationClass" / f"train_{i:05d}.png"))
        tiles.append(np.hstack([image, palette[mask], np.full((image.shape[0], 4, 3), 255, np.uint8)]))
    half = count // 2
    picture = np.vstack([np.hstack(tiles[:half]), np.hstack(tiles[half:])])

    def write(tmp: str) -> None:
        if not cv2.imwrite(tmp, picture):
            raise OSError(f"OpenCV could not write {path.name}")

    atomic_write(path, write)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("runs/paper"))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs1", type=int, default=10, help="stage-1 epochs")
    p.add_argument("--epochs2", type=int, default=3, help="epochs of every continuation (stage 1 continued, stage 2)")
    p.add_argument("--steps-per-epoch", type=int, default=200)
    p.add_argument("--lr2", type=float, default=0.002)
    p.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/paper_claims"), help="writes OUT.json, OUT.md, OUT.png"
    )
    a = p.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    started = time.time()
    dirs = []
    for seed in seeds:
        dirs.append(train_seed(a.work, seed, a))
        score_seed(dirs[-1])
    minutes = (time.time() - started) / 60
    budget = {
        "text": f"resnet18 cut after stage 2, 128 px, batch 8; stage 1 {a.epochs1 * a.steps_per_epoch} steps, each "
        "continuation "
        f"{a.epochs2 * a.steps_per_epoch} steps at lr {a.lr2}; {minutes:.0f} min for the steps not already done",
        "steps_stage1": a.epochs1 * a.steps_per_epoch,
        "steps_continuation": a.epochs2 * a.steps_per_epoch,
        "minutes": round(minutes, 1),
    }
    figures = collect(dirs)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        f"{a.out}.json",
        json.dumps({"seeds": seeds, "budget": budget, "figures": {k: stats(v) for k, v in figures.items()}}, indent=1)
        + "\n",
    )
    atomic_write_text(f"{a.out}.md", markdown(figures, seeds, budget))
    plot(figures, Path(f"{a.out}.png"))
    samples(dirs[0] / "data", Path(f"{a.out}_samples.png"))
    print(Path(f"{a.out}.md").read_text())


if __name__ == "__main__":
    sys.exit(main())
