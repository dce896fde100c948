"""Training and evaluation: `train_one_epoch`, `evaluate`, `fit` (docs/method.md, two stages)."""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader

from disseg.runtime.atomic import atomic_write_text
from disseg.runtime.console import progress
from disseg.runtime.dataset import Sample, list_samples, scan
from disseg.runtime.errors import BadInput, DisError
from disseg.runtime.image import resize_labels
from disseg.runtime.metrics import ConfusionMatrix, TagF1, tags_from_labels
from disseg.runtime.signals import StopOnSignals

from .checkpoint import load_checkpoint, save_checkpoint
from .config import DISConfig, TrainOptions
from .curves import write_curves
from .data import EvalSet, TrainSet, collate_eval
from .model import DIS, Heads, upsampled_scores
from .refine import refine

log = logging.getLogger("disseg.train")
ARCHITECTURE = ("class_names", "backbone", "output_stride", "stages", "mean", "std")


def predict(cfg: DISConfig, heads: Heads, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (labels B x height x width int64, tag probabilities B x K) from heads."""
    return upsampled_scores(cfg, heads, height, width).argmax(1), torch.sigmoid(heads.v3)


def to_input(bgr_images: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """uint8 BGR H x W x 3 images (already at the model size) -> RGB float B x 3 x H x W in [0, 1]."""
    batch = torch.from_numpy(np.stack(bgr_images)[..., ::-1].copy()).to(device)
    return batch.permute(0, 3, 1, 2).float().div_(255)


@torch.no_grad()
def evaluate(model: DIS, loader, *, iters: list[int], device: torch.device, energy_tags: bool = False) -> list[dict]:
    """Score the labelmap after each number of refinement steps in `iters`, computing features once.

    With energy_tags, the tags given with each sample (the weak split's noisy tags) join the energy,
    and "input_tag_f1" reports how good those tags were against the truth.
    """
    cfg = model.cfg
    model.eval()
    iters = sorted(set(iters))
    matrices = {t: ConfusionMatrix(cfg.num_classes) for t in iters}
    tag_scores = {t: TagF1() for t in iters}
    input_tags = TagF1()
    for batch in progress(loader, desc="eval", unit="batch"):
        x = model.normalize(to_input(batch["bgr"], device))
        u1, v1, image_small = model.features(x)
        tags = None
        if energy_tags and all(t is not None for t in batch["tags"]):
            tags = torch.from_numpy(np.stack(batch["tags"])).to(device)
        truth = [tags_from_labels(m, cfg.num_classes) if m is not None else None for m in batch["mask"]]
        if tags is not None:
            for given, true in zip(batch["tags"], truth):
                if true is not None:
                    input_tags.update(given, true)
        done = 0
        for t in iters:
            u1, v1 = refine(
                model,
                u1,
                v1,
                image_small,
                steps=t - done,
                step_size=cfg.step_size,
                tags=tags,
                tag_weight=cfg.tag_weight,
            )
            done = t
            labels, tag_prob = predict(cfg, model.heads(u1, v1), x.shape[2], x.shape[3])
            for i, mask in enumerate(batch["mask"]):
                if mask is None:
                    continue
                pred = resize_labels(labels[i].to(torch.uint8).cpu().numpy(), *mask.shape)
                matrices[t].update(pred, mask)
                tag_scores[t].update(tag_prob[i].cpu().numpy(), truth[i])
    results = []
    for t in iters:
        row = {
            "iters": t,
            **matrices[t].summary(cfg.class_names),
            "tag_f1": tag_scores[t].f1(),
            "confusion": matrices[t].matrix.tolist(),
        }  # rows: truth, columns: prediction (pixels)
        if energy_tags:
            row["input_tag_f1"] = input_tags.f1()
        results.append(row)
    return results


LOSS_TERMS = ("ce", "tag_bce", "image_mse")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _losses(model: DIS, x: torch.Tensor, labels: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
    """The loss terms, unweighted, as one tensor (LOSS_TERMS order); `weighted` sums them."""
    u1, v1, image_small = model.features(model.normalize(x))
    if model.cfg.train_through:  # differentiable: refine is plain ops on the model's own weights
        u1, v1 = refine(model, u1, v1, image_small, steps=model.cfg.train_through, step_size=model.cfg.step_size)
    h = model.heads(u1, v1)
    logits = F.interpolate(h.u3, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    # Per-image mean over valid pixels, then mean over images: every image weighs the same, and the
    # mean of per-process means under DistributedDataParallel equals the single-process loss.
    ce = F.cross_entropy(logits, labels, ignore_index=255, reduction="none").flatten(1)
    valid = (labels != 255).flatten(1).sum(1).clamp(min=1)
    return torch.stack(
        [(ce.sum(1) / valid).mean(), F.binary_cross_entropy_with_logits(h.v3, tags), F.mse_loss(h.z3, image_small)]
    )


def weighted(cfg, terms: torch.Tensor) -> torch.Tensor:
    """CE(u3, L) + lambda_tags BCE(v3, T) + lambda_image ||z3 - I_small||^2."""
    return terms[0] + cfg.lambda_tags * terms[1] + cfg.lambda_image * terms[2]


@torch.no_grad()
def weak_targets(model: DIS, x: torch.Tensor, tags: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage-2 targets for tag-only images: (pseudo labelmap, cleaned tags) after iters_train refinement
    steps with the noisy tags in the energy. Pixels whose best class the cleaned tags rule out (background
    excepted) are ignored, or with pseudo_ruled_out="relabel" take the best class the tags allow; pixels less
    confident than pseudo_threshold are ignored. Made by the current model in eval mode, so they never touch
    the batch-norm statistics."""
    cfg = model.cfg
    was_training = model.training
    model.eval()
    u1, v1, image_small = model.features(model.normalize(x))
    u1, v1 = refine(
        model, u1, v1, image_small, steps=cfg.iters_train, step_size=cfg.step_size, tags=tags, tag_weight=cfg.tag_weight
    )
    heads = model.heads(u1, v1)
    scores = upsampled_scores(cfg.replace(suppress_absent=False), heads, x.shape[2], x.shape[3])
    cleaned = torch.sigmoid(heads.v3)
    present = cleaned >= 0.5
    present[:, 0] = True
    if cfg.pseudo_ruled_out == "relabel":
        scores = scores.masked_fill(~present[:, :, None, None], float("-inf"))
    confidence, labels = torch.softmax(scores, 1).max(1)
    ruled_out = ~torch.gather(present, 1, labels.flatten(1)).view_as(labels)
    labels[ruled_out | (confidence < cfg.pseudo_threshold)] = 255
    model.train(was_training)
    return labels, cleaned


class BatchStream:
    """Training batches addressed by global step: the same batches for a resumed run and, split by rank,
    for any number of processes (rank r takes every world-th image of the global batch)."""

    def __init__(self, dataset: TrainSet, batch: int, *, rank: int, world: int, seed: int, what: str) -> None:
        self.dataset, self.batch, self.rank, self.world, self.seed = dataset, batch, rank, world, seed
        self.per_epoch = len(dataset) // batch
        if self.per_epoch == 0:
            raise BadInput(f"{len(dataset)} {what} images are fewer than one batch of {batch}; lower --batch")

    def batch_at(self, step: int) -> dict[str, torch.Tensor]:
        epoch, j = divmod(step, self.per_epoch)
        order = torch.randperm(len(self.dataset), generator=torch.Generator().manual_seed(self.seed + epoch))
        self.dataset.set_epoch(epoch)
        items = [self.dataset[int(i)] for i in order[j * self.batch : (j + 1) * self.batch][self.rank :: self.world]]
        return {k: torch.stack([item[k] for item in items]) for k in items[0]}


class Diverged(DisError):
    """The loss or the weights stopped being finite. Exit status 1; the checkpoints keep the last good epoch."""


def _finite_weights(model: torch.nn.Module) -> bool:
    """One reduction over every parameter (NaN and Inf survive a sum), one device sync."""
    return bool(torch.isfinite(torch.stack([p.detach().float().sum() for p in model.parameters()]).sum()))


def _stop_agreed(stop: threading.Event | None, world: int, device: torch.device) -> bool:
    """Whether to stop after this step; with several processes, all stop at the same step (one asked is enough)."""
    asked = stop is not None and stop.is_set()
    if world > 1:
        flag = torch.tensor([float(asked)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        asked = bool(flag.item())
    return asked


def _train_mode(model: DIS, *, freeze_bn: bool) -> None:
    """Training mode, BatchNorm layers excepted when `freeze_bn` (their running statistics stay as they are)."""
    model.train()
    if freeze_bn:
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()


def _step_loss(
    model: DIS, loss_fn: torch.nn.Module, device: torch.device, batch: dict, weak_batch: dict | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step's loss: the weighted terms on a fully labelled batch, plus (stage 2) the weak batch's loss against
    its pseudo labels and cleaned tags. Returns (loss, the terms, the weak loss or 0)."""
    x, labels, tags = batch["image"].to(device), batch["mask"].to(device), batch["tags"].to(device)
    weak_loss = torch.zeros((), device=device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        terms = loss_fn(x, labels, tags)
        loss = weighted(model.cfg, terms)
        if weak_batch is not None:
            xw, tw = weak_batch["image"].to(device), weak_batch["tags"].to(device)
            pseudo, cleaned = weak_targets(model, xw, tw)
            weak_loss = weighted(model.cfg, loss_fn(xw, pseudo, cleaned))
            loss = loss + model.cfg.weak_weight * weak_loss
    return loss, terms, weak_loss


def train_one_epoch(
    model: DIS,
    loss_fn: torch.nn.Module,
    optimizer,
    scheduler,
    device: torch.device,
    *,
    full: BatchStream,
    weak: BatchStream | None,
    first_step: int,
    steps: int,
    freeze_bn: bool,
    clip_grad: float,
    show: bool,
    totals: dict[str, float] | None = None,
    stop: threading.Event | None = None,
    world: int = 1,
) -> tuple[dict[str, float], int]:
    """Up to `steps` optimizer steps on fully labelled batches (plus one weak batch each in stage 2), adding the
    losses to `totals`; stops early once `stop` is set. Returns (loss sums, steps taken). Raises Diverged as soon as
    the loss or the weights are not finite."""
    _train_mode(model, freeze_bn=freeze_bn)
    totals = dict(totals) if totals else dict.fromkeys(("loss", *LOSS_TERMS, "weak_loss"), 0.0)
    done = 0
    for step in (
        progress(range(first_step, first_step + steps), desc="train", unit="step")
        if show
        else range(first_step, first_step + steps)
    ):
        batch = full.batch_at(step)
        weak_batch = None if weak is None else weak.batch_at(step)
        loss, terms, weak_loss = _step_loss(model, loss_fn, device, batch, weak_batch)
        if not torch.isfinite(loss):
            raise Diverged(f"the training loss is not finite at step {step}; lower --lr (or --step-size, --tag-weight)")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        optimizer.step()
        if not _finite_weights(model):
            raise Diverged(f"the weights are not finite after step {step}; lower --lr")
        scheduler.step()
        done += 1
        totals["loss"] += loss.item()
        totals["weak_loss"] += weak_loss.item()
        for name, value in zip(LOSS_TERMS, terms.detach().float().tolist()):
            totals[name] += value
        if _stop_agreed(stop, world, device):
            break
    return totals, done


class LossModule(torch.nn.Module):
    """The training loss as a module's forward, so DistributedDataParallel can wrap it."""

    def __init__(self, model: DIS) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, labels: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
        return _losses(self.model, x, labels, tags)


def _distributed(backend: str) -> tuple[int, int]:
    """(rank, world size): under torchrun, join its process group (`auto`: NCCL where CUDA is, else gloo)."""
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1 and not dist.is_initialized():
        if backend == "auto":
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _device(opts: TrainOptions, world: int) -> torch.device:
    device = torch.device(opts.device if opts.device != "cuda" else f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BadInput("--device cuda asked for, but PyTorch sees no CUDA GPU here; use --device cpu")
    if opts.batch % world:
        raise BadInput(f"--batch {opts.batch} is the global batch and must divide by the {world} processes")
    return device


def _checkpoints(cfg: DISConfig, opts: TrainOptions) -> tuple[DISConfig, dict | None, dict | None]:
    """(config, RUN/last.pt to resume, --init checkpoint): a resumed run keeps its config; --init brings its
    architecture, this run its method settings."""
    last = opts.out / "last.pt"
    resume = load_checkpoint(last) if opts.resume and last.is_file() else None
    if opts.resume and resume is None:
        raise BadInput(f"--resume: no {last} to resume from; start the run without --resume")
    if resume is not None:
        cfg = DISConfig.from_dict(resume["config"])
    init = load_checkpoint(opts.init) if opts.init and resume is None else None
    if init is not None:
        init_cfg = DISConfig.from_dict(init["config"])
        if init_cfg.class_names != cfg.class_names:
            raise BadInput(
                f"{opts.init} was trained on classes {list(init_cfg.class_names)}, the data has {list(cfg.class_names)}"
            )
        cfg = cfg.replace(**{k: getattr(init_cfg, k) for k in ARCHITECTURE})
    cfg.feature_grid(cfg.size, cfg.size)  # the architecture may come from --init: check the crop against it
    return cfg, resume, init


def _data(
    cfg: DISConfig, opts: TrainOptions, rank: int, world: int
) -> tuple[BatchStream, BatchStream | None, int, DataLoader]:
    """(fully labelled stream, weak stream in stage 2, steps per epoch, validation loader)."""
    names, train_samples = list_samples(opts.data, "train")
    if names != cfg.class_names:
        raise BadInput(
            f"{opts.data} has classes {list(names)}, the model {list(cfg.class_names)}; use the same classes.txt"
        )
    train_samples = scan(train_samples, cfg.num_classes)[: opts.max_train]
    val_samples = scan(list_samples(opts.data, "val")[1], cfg.num_classes)
    train_set = TrainSet(train_samples, cfg.num_classes, cfg.size, seed=opts.seed)
    full = BatchStream(train_set, opts.batch, rank=rank, world=world, seed=opts.seed, what="fully labelled")
    weak = None
    if opts.stage == 2:
        weak_samples = scan(list_samples(opts.data, "weak")[1], cfg.num_classes)
        weak_samples = [Sample(s.image, None, s.tags) for s in weak_samples]  # never train on a weak image's mask
        weak_set = TrainSet(weak_samples, cfg.num_classes, cfg.size, seed=opts.seed + 1, augment=False)
        weak = BatchStream(weak_set, opts.batch, rank=rank, world=world, seed=opts.seed + 1, what="weak")
    # An epoch is one pass over the larger of the two sets (stage 2 usually has many more weak images).
    steps = opts.steps_per_epoch or max(full.per_epoch, weak.per_epoch if weak else 0)
    val_loader = DataLoader(
        EvalSet(val_samples, cfg.num_classes, cfg.size, cfg.size), batch_size=8, collate_fn=collate_eval, num_workers=0
    )
    return full, weak, steps, val_loader


def _optimization(model: DIS, opts: TrainOptions, steps: int, device: torch.device, world: int):
    """(loss module, DDP-wrapped across processes; optimizer; polynomial learning-rate schedule over the run)."""
    loss_fn: torch.nn.Module = LossModule(model)
    if world > 1:
        loss_fn = torch.nn.parallel.DistributedDataParallel(
            loss_fn, device_ids=[device.index] if device.type == "cuda" else None
        )
    lr = opts.lr or (0.01 if opts.optimizer == "sgd" else 1e-3)
    if opts.optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=opts.weight_decay)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=opts.weight_decay)
    scheduler = torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=opts.epochs * steps, power=0.9)
    return loss_fn, optimizer, scheduler


@dataclass
class _Run:
    """What the epoch loop carries between epochs."""

    cfg: DISConfig
    opts: TrainOptions
    model: DIS
    optimizer: torch.optim.Optimizer
    scheduler: Any
    device: torch.device
    val_loader: DataLoader
    best: float = -math.inf
    history: list = field(default_factory=list)

    partial: dict | None = None  # a started epoch: {"epoch", "done" (steps), "totals", "lr", "seconds"}

    def restore(self, resume: dict) -> int:
        """Continue RUN/last.pt exactly: weights, optimizer, schedule, RNG, history and, for a run stopped inside an
        epoch, that epoch's steps taken and loss sums. Returns the epoch to continue."""
        self.model.load_state_dict(resume["model"])
        self.optimizer.load_state_dict(resume["optimizer"])
        self.scheduler.load_state_dict(resume["scheduler"])
        torch.set_rng_state(resume["rng"]["torch"])
        self.best, self.history = resume["best_miou"], resume["history"]
        self.partial = resume.get("partial_epoch")
        return resume["epoch"] + 1

    def _state(self, epoch: int) -> dict:
        """Everything a resumed run needs; `epoch`: the last finished one."""
        return {
            "config": self.cfg.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": {"torch": torch.get_rng_state()},
            "epoch": epoch,
            "best_miou": self.best,
            "history": self.history,
            "stage": self.opts.stage,
            "data": str(self.opts.data.resolve()),
            "partial_epoch": self.partial,
        }

    def save_stopped(self, epoch: int, done: int, totals: dict, lr: float, seconds: float) -> None:
        """A stop signal inside an epoch: RUN/last.pt records the steps taken, so --resume continues at the next step
        exactly (best.pt and metrics are written at epoch ends only)."""
        self.partial = {"epoch": epoch, "done": done, "totals": totals, "lr": lr, "seconds": seconds}
        save_checkpoint(self.opts.out / "last.pt", self._state(epoch - 1))
        log.info("stopped in epoch %d after %d steps; saved %s (continue with --resume)", epoch, done,
                 self.opts.out / "last.pt")  # fmt: skip

    def end_epoch(self, epoch: int, losses: dict, lr: float, seconds: float, steps: int) -> None:
        """Score on the validation split, then write last.pt (best.pt when better), metrics.json/.csv and curves."""
        cfg, opts, out = self.cfg, self.opts, self.opts.out
        scoring = time.perf_counter()
        results = evaluate(
            self.model, self.val_loader, iters=sorted({0, cfg.iters_test, *opts.eval_iters}), device=self.device
        )
        scoring = time.perf_counter() - scoring
        score = next(r["miou"] for r in results if r["iters"] == cfg.iters_test)
        self.history.append(
            {
                "epoch": epoch,
                **losses,
                "lr": lr,
                "seconds": round(seconds, 2),
                "val": [{k: r[k] for k in ("iters", "miou", "pixel_acc", "tag_f1")} for r in results],
            }
        )
        left = (opts.epochs - 1 - epoch) * (seconds + scoring)
        log.info(
            "epoch %d loss %.4f val mIoU %s (%.0f s, %.1f steps/s%s)",
            epoch,
            losses["loss"],
            ", ".join(f"t={r['iters']}: {r['miou']:.2f}" for r in results),
            seconds + scoring,
            steps / max(seconds, 1e-9),
            f"; about {_duration(left)} left" if left else "",
        )
        self.partial = None
        better = score > self.best
        self.best = max(self.best, score)
        state = self._state(epoch)
        if better:
            save_checkpoint(out / "best.pt", state)
        save_checkpoint(out / "last.pt", state)
        metrics = {"stage": opts.stage, "config": cfg.to_dict(), "best_val_miou": self.best, "epochs": self.history}
        atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
        write_curves(out, self.history, stage=opts.stage, iters_test=cfg.iters_test)


def fit(cfg: DISConfig, opts: TrainOptions) -> dict:
    """Train stage `opts.stage`; write RUN/last.pt (each epoch), RUN/best.pt, RUN/metrics.json/.csv and curves.
    Returns the metrics. A stop signal (Ctrl-C, SIGTERM, SIGHUP) ends the run at the next step with a resumable
    RUN/last.pt and raises signals.Stopped; a diverging run raises Diverged, its checkpoints as they were."""
    with StopOnSignals() as signals:
        result = _fit(cfg, opts, signals.event)
    signals.raise_if_stopped()
    return result


def _fit(cfg: DISConfig, opts: TrainOptions, stop: threading.Event) -> dict:
    rank, world = _distributed(opts.dist_backend)
    device = _device(opts, world)
    torch.manual_seed(opts.seed)
    cfg, resume, init = _checkpoints(cfg, opts)
    model = DIS(cfg, pretrained=opts.pretrained if init is None and resume is None else None).to(device)
    if init is not None:
        model.load_state_dict(init["model"])
    full, weak, steps, val_loader = _data(cfg, opts, rank, world)
    loss_fn, optimizer, scheduler = _optimization(model, opts, steps, device, world)
    run = _Run(cfg, opts, model, optimizer, scheduler, device, val_loader)
    start = run.restore(resume) if resume is not None else 0
    if rank == 0:  # also the line a supervisor (or a test) waits for before it may stop the run
        log.info("training epochs %d to %d, %d steps each, on %s", start, opts.epochs - 1, steps, device)
    for epoch in range(start, opts.epochs):  # a stop signal ends train_one_epoch after its next step
        began = run.partial if run.partial and run.partial["epoch"] == epoch else None
        done = began["done"] if began else 0
        started = time.perf_counter() - (began["seconds"] if began else 0.0)
        lr = began["lr"] if began else scheduler.get_last_lr()[0]  # the rate the epoch starts at
        totals, taken = train_one_epoch(
            model,
            loss_fn,
            optimizer,
            scheduler,
            device,
            full=full,
            weak=weak,
            first_step=epoch * steps + done,
            steps=steps - done,
            freeze_bn=opts.freeze_bn,
            clip_grad=opts.clip_grad,
            show=rank == 0,
            totals=began["totals"] if began else None,
            stop=stop,
            world=world,
        )
        done += taken
        if done < steps:  # stopped by a signal inside the epoch
            if rank == 0 and taken:
                run.save_stopped(epoch, done, totals, lr, time.perf_counter() - started)
            break
        if rank == 0:
            run.end_epoch(epoch, {k: v / steps for k, v in totals.items()}, lr, time.perf_counter() - started, steps)
        if world > 1:
            dist.barrier()
    return {"best_val_miou": run.best, "epochs": run.history}
