"""dis-data, dis-train and dis-eval."""

from __future__ import annotations

from pathlib import Path

import click

from disseg.runtime.atomic import check_output
from disseg.runtime.backends import CHOICES
from disseg.runtime.cli_util import (
    MAX_BATCH,
    MAX_COUNT,
    MAX_ITERS,
    MAX_SEED,
    MAX_SIDE,
    MAX_WEIGHT,
    MODEL,
    Command,
    Finite,
    Group,
    handle_errors,
    parse_int_list,
    setup_logging,
    write_json,
)
from disseg.runtime.deps import extra
from disseg.runtime.errors import BadInput

from .config import BACKBONES, RULED_OUT, TAG_GATES, DISConfig, TrainOptions
from .synth_presets import PRESET_DEFAULTS, PRESETS


@click.group(cls=Group, help="Make data sets for DIS.")
def data_cli() -> None:
    setup_logging()


@data_cli.command(
    "synth",
    help="Write a synthetic VOC-layout data set with a noisy tag-only (weak) split. Preset 'easy': "
    "7 classes, each its own colour and texture; 'hard': 21 classes in look-alike groups that only the scene "
    "tells apart, few labelled and 10x as many tag-only images (the paper's regime).",
)
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--preset", default="easy", show_default=True, type=click.Choice(PRESETS))
@click.option("--num-train", type=click.IntRange(1, MAX_COUNT), help="[default: easy 200, hard 42]")
@click.option("--num-val", type=click.IntRange(1, MAX_COUNT), help="[default: easy 100, hard 105]")
@click.option("--num-weak", type=click.IntRange(0, MAX_COUNT), help="[default: easy 400, hard 420]")
@click.option("--size", type=click.IntRange(16, MAX_SIDE), help="image side in pixels [default: easy 256, hard 128]")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, MAX_SEED))
@click.option("--tag-drop", type=Finite(0, 1), help="chance a present tag is dropped [default: easy 0.2, hard 0.3]")
@click.option("--tag-add", type=Finite(0, 1), help="chance an absent tag is added [default: easy 0.05, hard 0.03]")
@handle_errors
def synth(out: Path, preset, seed, **counts) -> None:
    from .synth import write_dataset

    check_output(out, option="dis-data synth OUT", kind="folder")
    if out.exists() and any(out.iterdir()):
        raise BadInput(f"{out} exists and is not empty; choose a new folder or remove it")
    given = {k: v for k, v in counts.items() if v is not None}
    written = write_dataset(out, seed=seed, preset=preset, **{**PRESET_DEFAULTS[preset], **given})
    click.echo(f"wrote {out} ({preset}): " + ", ".join(f"{n} {k}" for k, n in written.items()))


@click.command(cls=Command, help="Train DIS: stage 1 on fully labelled images, stage 2 adds tag-only images.")
@click.option("--data", required=True, type=click.Path(path_type=Path), help="data set folder (VOC or folder layout)")
@click.option(
    "--out", required=True, type=click.Path(path_type=Path), help="run folder: best.pt, last.pt, metrics.json"
)
@click.option("--stage", default=str(TrainOptions.stage), show_default=True, type=click.Choice(["1", "2"]))
@click.option(
    "--init",
    type=click.Path(path_type=Path),
    help="start from this checkpoint (its architecture; stage 2 from stage 1's best.pt)",
)
@click.option("--backbone", default=DISConfig.backbone, show_default=True, type=click.Choice(BACKBONES))
@click.option(
    "--stages", default=DISConfig.stages, show_default=True, type=click.IntRange(2, 4), help="resnet stages kept"
)
@click.option(
    "--output-stride", default=str(DISConfig.output_stride), show_default=True, type=click.Choice(["8", "16"])
)
@click.option(
    "--pretrained",
    is_flag=False,
    flag_value="imagenet",
    default=None,
    metavar="[PATH_OR_URL]",
    help="start the backbone from torchvision's ImageNet weights (downloaded once into torch's cache), "
    "or from a state dict file or URL",
)
@click.option(
    "--size",
    default=DISConfig.size,
    show_default=True,
    type=click.IntRange(32, MAX_SIDE),
    help="training crop (pixels)",
)
@click.option("--epochs", default=TrainOptions.epochs, show_default=True, type=click.IntRange(1, MAX_COUNT))
@click.option(
    "--batch", default=TrainOptions.batch, show_default=True, type=click.IntRange(1, MAX_BATCH), help="global batch"
)
@click.option("--optimizer", default=TrainOptions.optimizer, show_default=True, type=click.Choice(["sgd", "adamw"]))
@click.option("--lr", type=Finite(0, 10, min_open=True), help="[default: 0.01 sgd, 0.001 adamw]")
@click.option(
    "--iters-train",
    default=DISConfig.iters_train,
    show_default=True,
    type=click.IntRange(0, MAX_ITERS),
    help="refinement steps for stage-2 pseudo labels",
)
@click.option(
    "--iters-test",
    default=DISConfig.iters_test,
    show_default=True,
    type=click.IntRange(0, MAX_ITERS),
    help="refinement steps scored for best.pt",
)
@click.option(
    "--pseudo-ruled-out",
    default=DISConfig.pseudo_ruled_out,
    show_default=True,
    type=click.Choice(RULED_OUT),
    help="stage 2: a pixel whose class the cleaned tags rule out is ignored, or relabelled with the best allowed class",
)
@click.option(
    "--train-through",
    default=DISConfig.train_through,
    show_default=True,
    type=click.IntRange(0, MAX_ITERS),
    help="take the training loss after this many refinement steps, backpropagated through them",
)
@click.option(
    "--step-size",
    default=DISConfig.step_size,
    show_default=True,
    type=Finite(0, MAX_WEIGHT),
    help="refinement step size alpha",
)
@click.option(
    "--tag-weight",
    default=DISConfig.tag_weight,
    show_default=True,
    type=Finite(0, MAX_WEIGHT),
    help="tag term weight in the energy",
)
@click.option(
    "--tag-gate",
    default=DISConfig.tag_gate,
    show_default=True,
    type=click.Choice(TAG_GATES),
    help="how tag probabilities gate the labelmap (multiply: the paper's u3*sigmoid(v3))",
)
@click.option(
    "--weak-weight",
    default=DISConfig.weak_weight,
    show_default=True,
    type=Finite(0, MAX_WEIGHT),
    help="stage 2: weight of the weak images' loss",
)
@click.option(
    "--pseudo-threshold",
    default=DISConfig.pseudo_threshold,
    show_default=True,
    type=Finite(0, 1),
    help="stage 2: ignore pseudo-label pixels less confident than this",
)
@click.option("--eval-iters", default="", help="extra refinement step counts scored each epoch, e.g. 1,3")
@click.option("--max-train", type=click.IntRange(1, MAX_COUNT), help="use only the first N fully labelled images")
@click.option(
    "--steps-per-epoch",
    type=click.IntRange(1, MAX_COUNT),
    help="optimizer steps per epoch [default: one pass over the larger set]",
)
@click.option("--freeze-bn", is_flag=True, help="keep batch-norm statistics fixed")
@click.option("--device", default=TrainOptions.device, show_default=True, type=click.Choice(["cpu", "cuda"]))
@click.option("--seed", default=TrainOptions.seed, show_default=True, type=click.IntRange(0, MAX_SEED))
@click.option(
    "--dist-backend",
    default=TrainOptions.dist_backend,
    show_default=True,
    type=click.Choice(["auto", "nccl", "gloo"]),
    help="torch.distributed backend under torchrun (auto: NCCL where CUDA is, else gloo)",
)
@click.option("--resume", is_flag=True, help="continue RUN/last.pt exactly where it stopped")
@handle_errors
def train_cli(**options) -> None:
    """The options split as the code splits them: the model and method (DISConfig, saved in checkpoints) and how
    this run trains (TrainOptions); each option's name is its field's name."""
    setup_logging()
    import dataclasses

    from disseg.runtime.dataset import read_classes

    from .engine import fit

    data, out = Path(options["data"]), Path(options["out"])
    if options["stage"] == "2" and options["init"] is None and not options["resume"]:
        raise BadInput("--stage 2 needs --init CKPT (the stage-1 best.pt) or --resume")
    if (out / "last.pt").exists() and not options["resume"]:
        raise BadInput(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    if not data.is_dir():
        raise BadInput(f"{data}: no such data folder; make one with: dis-data synth {data}")
    check_output(out, option="--out", kind="folder")
    options.update(
        stage=int(options["stage"]),
        output_stride=int(options["output_stride"]),
        data=data,
        out=out,
        eval_iters=tuple(parse_int_list(options["eval_iters"], name="--eval-iters")) if options["eval_iters"] else (),
    )
    config_fields = {f.name for f in dataclasses.fields(DISConfig)}
    cfg = DISConfig(class_names=read_classes(data), **{k: v for k, v in options.items() if k in config_fields})
    try:
        cfg.validate()
    except ValueError as err:
        raise BadInput(str(err)) from None
    cfg.feature_grid(cfg.size, cfg.size)
    opts = TrainOptions(**{k: v for k, v in options.items() if k not in config_fields})
    result = fit(cfg, opts)
    click.echo(f"best val mIoU {result['best_val_miou']:.2f}; wrote {out}/best.pt, last.pt, metrics.json")


@click.command(cls=Command, help="Score a model (.pt checkpoint, .onnx or TensorRT engine) on a data split.")
@click.argument("model", type=MODEL)
@click.option("--data", required=True, type=click.Path(path_type=Path))
@click.option(
    "--split",
    default="val",
    show_default=True,
    type=click.Choice(["train", "val", "weak"]),
    help="'weak' puts each image's (noisy) tags into the energy and reports input vs cleaned tag F1",
)
@click.option("--iters", default=None, help="refinement step counts to score, e.g. 0,1,3 [default: the model's own]")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="write the results here")
@click.option(
    "--plot", "plot_path", type=click.Path(path_type=Path), help="draw mIoU (and tag F1) against refinement steps (PNG)"
)
@click.option("--batch", default=8, show_default=True, type=click.IntRange(1, MAX_BATCH))
@click.option("--device", default="cpu", show_default=True, type=click.Choice(["cpu", "cuda"]))
@click.option(
    "--backend", default="auto", show_default=True, type=click.Choice(CHOICES), help="for .onnx and engine files"
)
@click.option("--step-size", type=Finite(0, MAX_WEIGHT), help="override the checkpoint's refinement step size (tuning)")
@click.option("--tag-weight", type=Finite(0, MAX_WEIGHT), help="override the tag term's weight in the energy (tuning)")
@click.option("--tag-gate", type=click.Choice(TAG_GATES), help="override how tags gate the labelmap")
@handle_errors
def eval_cli(
    model: Path, data, split, iters, json_path, plot_path, batch, device, backend, step_size, tag_weight, tag_gate
) -> None:
    setup_logging()
    from disseg.runtime.contract import EXPORTED, model_kind, wrong_kind

    kind = model_kind(model)
    if kind not in ("checkpoint", "onnx", "engine", "remote"):
        raise wrong_kind(model, kind, wanted=f"a checkpoint or {EXPORTED}", fix="dis-eval scores those")
    for path, option in ((json_path, "--json"), (plot_path, "--plot")):
        if path is not None:
            check_output(path, option=option)
    iters_list = parse_int_list(iters, name="--iters") if iters else None
    if kind == "checkpoint":
        overrides = {
            k: v
            for k, v in (("step_size", step_size), ("tag_weight", tag_weight), ("tag_gate", tag_gate))
            if v is not None
        }
        results = _eval_checkpoint(model, data, split, iters_list, batch, device, overrides)
    else:
        if step_size is not None or tag_weight is not None or tag_gate is not None:
            raise BadInput(
                "--step-size, --tag-weight and --tag-gate apply to .pt checkpoints; an exported model has them built in"
            )
        from disseg.runtime.evaluate import evaluate_exported

        results = evaluate_exported(model, data, split=split, iters=iters_list, backend=backend)
    for r in results:
        extra = f"  tag F1 {r['tag_f1']}" if r.get("tag_f1") is not None else ""
        if r.get("input_tag_f1") is not None:
            extra += f" (input tags {r['input_tag_f1']})"
        click.echo(f"t={r['iters']}: mIoU {r['miou']:.2f}  pixel acc {r['pixel_acc']:.2f}{extra}")
    if json_path:
        write_json(json_path, {"model": str(model), "split": split, "results": results})
    if plot_path:
        _plot_iters(plot_path, model, split, results)


def _plot_iters(path: Path, model: Path, split: str, results: list[dict]) -> None:
    """mIoU (and tag F1 where scored) against the number of refinement steps."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BadInput(f"--plot needs matplotlib: {extra('plot')} (the --json results hold the same numbers)") from None
    from disseg.runtime.atomic import atomic_write

    from .curves import readable_axes

    steps = [r["iters"] for r in results]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(steps, [r["miou"] for r in results], marker="o", label="mIoU")
    if any(r.get("tag_f1") is not None for r in results):
        ax.plot(steps, [r.get("tag_f1") for r in results], marker="s", label="tag F1")
    ax.set(xlabel="refinement steps t", ylabel="%", title=f"{getattr(model, 'name', model)} on {split}")
    readable_axes(ax, steps, percent=True)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
    click.echo(f"wrote {path}")


def _eval_checkpoint(
    path: Path, data: Path, split: str, iters: list[int] | None, batch: int, device: str, overrides: dict
) -> list[dict]:
    import torch
    from torch.utils.data import DataLoader

    from disseg.runtime.dataset import list_samples, scan

    from .checkpoint import model_from_checkpoint
    from .data import EvalSet, collate_eval
    from .engine import evaluate

    model, _ = model_from_checkpoint(path)
    model.cfg = model.cfg.replace(**overrides)
    names, samples = list_samples(data, split)
    if names != model.cfg.class_names:
        raise BadInput(f"{data} has classes {list(names)}, the model {list(model.cfg.class_names)}")
    samples = scan(samples, model.cfg.num_classes)
    size = model.cfg.size
    loader = DataLoader(EvalSet(samples, model.cfg.num_classes, size, size), batch_size=batch, collate_fn=collate_eval)
    dev = torch.device(device)
    return evaluate(
        model.to(dev),
        loader,
        iters=iters if iters is not None else [model.cfg.iters_test],
        device=dev,
        energy_tags=split == "weak",
    )
