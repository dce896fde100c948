"""Scene tags at run time: DIS's refinement energy with tags against plain masking of the absent classes, on the hard
synthetic preset, over seeds (the stage-2 models of benchmarks/paper_claims.py: same data, flags and budget).

    python benchmarks/scene_tags.py [--work runs/paper] [--seeds 0,1,2] -> benchmarks/results/scene_tags.{json,md}

Per seed, on the validation split, mIoU at t = 0, 1, 3, 5 refinement steps for four kinds of tags:
  none     no tags (what the exported model does today);
  true     the image's own tags (from its labelmap), an upper bound no camera has;
  camera   the union of the true tags of every image of the same scene: what a site operator would name;
  noisy    the true tags with the tag-only split's noise (30 % of objects dropped, 3 % of absent classes added);
each through the energy (tags in its tag term, the checkpoint's tag_weight), as masking (absent classes' scores sunk
at t = 0, background kept; no DIS needed), and both combined (energy, then masking). The energy's tag term comes in
two forms: "energy" is training's BCE with the tags as targets (pulls named classes up and the others down), the form
`dis-export --scene-tags` ships (switched off for all-ones tags, which no row here has); "one-sided" only pulls
classes down to their tag (train/refine.py), the form that would make all-ones tags a no-op by itself. Deltas are
paired per seed against "none" at t = 0. Training is skipped when paper_claims.py already trained the seed in
--work; `--methods` recomputes only those rows and keeps the others of an existing --out JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from paper_claims import DEFAULT_T_TRAIN, run  # noqa: E402

from disseg.runtime.atomic import atomic_write_text  # noqa: E402
from disseg.runtime.cli_util import write_json  # noqa: E402

T = (0, 1, 3, 5)
KINDS = ("none", "true", "camera", "noisy")
SCENES = 3  # the hard preset's scenes: class c > 0 belongs to scene (c - 1) % 3 (train/synth.py)


def train(work: Path, seed: int, a: argparse.Namespace) -> Path:
    """The stage-2 model of paper_claims.py for this seed (data, stage 1, stage 2 at t_train = 10)."""
    d = work / f"seed{seed}"
    d.mkdir(parents=True, exist_ok=True)
    log, data = d / "log.txt", d / "data"
    run(["dis-data", "synth", str(data), "--preset", "hard", "--seed", str(seed)], data / "classes.txt", log)
    common = ["--data", str(data), "--seed", str(seed), "--steps-per-epoch", str(a.steps_per_epoch), "--size", "128"]
    s1 = ["dis-train", *common, "--out", str(d / "s1"), "--stages", "2", "--epochs", str(a.epochs1)]
    run(s1, d / "s1" / "last.pt", log)
    s2 = d / f"s2_t{DEFAULT_T_TRAIN}"
    more = [*common, "--init", str(d / "s1" / "last.pt"), "--epochs", str(a.epochs2), "--lr", str(a.lr2)]
    run(["dis-train", *more, "--stage", "2", "--iters-train", str(DEFAULT_T_TRAIN), "--out", str(s2)], s2 / "last.pt",
        log)  # fmt: skip
    return d


def tag_sets(masks: list[np.ndarray], k: int, seed: int) -> dict[str, np.ndarray]:
    """N x K tags of each kind (background always 1)."""
    from disseg.runtime.metrics import tags_from_labels

    true = np.stack([tags_from_labels(m, k) for m in masks])
    true[:, 0] = 1
    scene = [int(np.bincount((np.nonzero(row[1:])[0]) % SCENES, minlength=SCENES).argmax()) for row in true]
    camera = np.zeros_like(true)
    for s in range(SCENES):
        members = [i for i, v in enumerate(scene) if v == s]
        if members:
            camera[members] = true[members].max(0)
    rng = np.random.default_rng(1000 + seed)
    drop = (rng.random(true.shape) < 0.3) & (true > 0)
    add = (rng.random(true.shape) < 0.03) & (true == 0)
    noisy = np.where(drop, 0.0, np.where(add, 1.0, true)).astype(np.float32)
    camera[:, 0] = noisy[:, 0] = 1
    return {"true": true, "camera": camera, "noisy": noisy}


METHODS = ("energy", "masking", "combined", "one-sided", "one-sided+masking")


def labels_for(
    net, x: torch.Tensor, tags: torch.Tensor | None, *, mask: bool, one_sided: bool
) -> dict[int, torch.Tensor]:
    """Labels at each t in T: refinement with `tags` in the energy (None: without; `one_sided`: that variant),
    scores masked by `tags` if asked."""
    from disseg.train.model import upsampled_scores
    from disseg.train.refine import refine

    cfg = net.cfg
    u1, v1, small = net.features(net.normalize(x))
    out, done = {}, 0
    for t in T:
        u1, v1 = refine(
            net, u1, v1, small, steps=t - done, step_size=cfg.step_size, tags=tags, tag_weight=cfg.tag_weight,
            one_sided=one_sided,
        )  # fmt: skip
        done = t
        scores = upsampled_scores(cfg, net.heads(u1, v1), x.shape[2], x.shape[3])
        if mask and tags is not None:
            scores = scores.masked_fill(tags[:, :, None, None] < 0.5, -1e4)
        out[t] = scores.argmax(1)
    return out


def score_seed(d: Path, methods: tuple[str, ...]) -> dict:
    """mIoU per (kind, method, t) on the validation split of seed folder `d`, for `methods` (and no tags)."""
    from disseg.runtime.dataset import list_samples, load_eval_item
    from disseg.runtime.image import resize_labels
    from disseg.runtime.metrics import ConfusionMatrix
    from disseg.train.checkpoint import model_from_checkpoint

    net, _ = model_from_checkpoint(d / f"s2_t{DEFAULT_T_TRAIN}" / "last.pt")
    names, samples = list_samples(d / "data", "val")
    k, size = len(names), net.cfg.size
    items = [load_eval_item(s, k, size, size) for s in samples]
    masks = [it["mask"] for it in items]
    sets = tag_sets(masks, k, int(d.name.removeprefix("seed")))
    images = torch.from_numpy(np.stack([it["bgr"][..., ::-1] for it in items]).copy()).permute(0, 3, 1, 2) / 255.0
    plans = [("none", "energy")] + [(kind, method) for kind in KINDS[1:] for method in methods]
    rows = {}
    with torch.no_grad():
        for kind, method in plans:
            matrices = {t: ConfusionMatrix(k) for t in T}
            for i in range(0, len(items), 16):
                x = images[i : i + 16].float()
                given = torch.from_numpy(sets[kind][i : i + 16]) if kind != "none" else None
                if method == "masking":  # no DIS: the tags only sink absent classes, at t = 0
                    result = {0: _masked(net, x, given)}
                else:
                    mask, one_sided = method in ("combined", "one-sided+masking"), method.startswith("one-sided")
                    result = labels_for(net, x, given, mask=mask, one_sided=one_sided)
                for t, labels in result.items():
                    for j, lab in enumerate(labels.numpy().astype(np.uint8)):
                        matrices[t].update(resize_labels(lab, *masks[i + j].shape), masks[i + j])
            rows[f"{kind}/{method}"] = {str(t): round(matrices[t].miou(), 3) for t in result}
            print(d.name, kind, method, rows[f"{kind}/{method}"], flush=True)
    return rows


def _masked(net, x: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
    from disseg.train.model import upsampled_scores

    u1, v1, _ = net.features(net.normalize(x))
    scores = upsampled_scores(net.cfg, net.heads(u1, v1), x.shape[2], x.shape[3])
    return scores.masked_fill(tags[:, :, None, None] < 0.5, -1e4).argmax(1)


def summarize(per_seed: dict[int, dict]) -> dict:
    """mean ± sd over seeds of every cell, and of its paired difference with none/energy at t = 0."""
    cells = sorted({(r, t) for rows in per_seed.values() for r, ts in rows.items() for t in ts})
    out = {}
    for row, t in cells:
        values = [rows[row][t] for rows in per_seed.values()]
        deltas = [rows[row][t] - rows["none/energy"]["0"] for rows in per_seed.values()]
        out.setdefault(row, {})[t] = {
            "mean": round(statistics.mean(values), 2),
            "sd": round(statistics.stdev(values), 2) if len(values) > 1 else 0.0,
            "delta_vs_none_t0": round(statistics.mean(deltas), 2),
            "delta_sd": round(statistics.stdev(deltas), 2) if len(deltas) > 1 else 0.0,
        }
    return out


def markdown(summary: dict, seeds: list[int]) -> str:
    lines = [
        f"# Scene tags: energy vs masking (hard preset, seeds {', '.join(map(str, seeds))}; mean ± sd mIoU, "
        "paired delta vs no tags at t = 0)",
        "",
        "| tags | method | " + " | ".join(f"t = {t}" for t in T) + " |",
        "|---|---|" + "---|" * len(T),
    ]
    for row, ts in summary.items():
        kind, method = row.split("/")
        cells = [
            f"{ts[str(t)]['mean']:.2f} ± {ts[str(t)]['sd']:.2f} ({ts[str(t)]['delta_vs_none_t0']:+.2f})"
            if str(t) in ts
            else "-"
            for t in T
        ]
        lines.append(f"| {kind} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("runs/paper"))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs1", type=int, default=10)
    p.add_argument("--epochs2", type=int, default=3)
    p.add_argument("--steps-per-epoch", type=int, default=200)
    p.add_argument("--lr2", type=float, default=0.002)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/scene_tags"))
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma list of {','.join(METHODS)}")
    a = p.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    methods = tuple(m for m in a.methods.split(",") if m)
    if set(methods) - set(METHODS):
        p.error(f"--methods: choose from {','.join(METHODS)}")
    started = time.time()
    earlier = a.out.with_suffix(".json")
    kept = json.loads(earlier.read_text())["per_seed"] if earlier.is_file() else {}
    per_seed = {seed: {**kept.get(str(seed), {}), **score_seed(train(a.work, seed, a), methods)} for seed in seeds}
    summary = summarize(per_seed)
    report = {"seeds": seeds, "t": list(T), "per_seed": per_seed, "summary": summary,
              "minutes_last_run": round((time.time() - started) / 60, 1),
              "methods_last_run": list(methods)}  # fmt: skip
    write_json(a.out.with_suffix(".json"), report)
    atomic_write_text(a.out.with_suffix(".md"), markdown(summary, seeds))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
