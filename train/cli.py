"""dis-data, dis-train and dis-eval."""
from __future__ import annotations

from pathlib import Path

import click

from disseg.runtime.cli_util import handle_errors, parse_int_list, setup_logging, write_json
from disseg.runtime.errors import BadInput



@click.group(help="Make data sets for DIS.")
def data_cli() -> None:
    setup_logging()


@data_cli.command("synth", help="Write a synthetic VOC-layout data set with a noisy tag-only (weak) split.")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--num-train", default=200, show_default=True, type=click.IntRange(1))
@click.option("--num-val", default=100, show_default=True, type=click.IntRange(1))
@click.option("--num-weak", default=400, show_default=True, type=click.IntRange(0))
@click.option("--size", default=256, show_default=True, type=click.IntRange(16), help="image side in pixels")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--tag-drop", default=0.2, show_default=True, type=click.FloatRange(0, 1), help="chance a present tag is dropped")
@click.option("--tag-add", default=0.05, show_default=True, type=click.FloatRange(0, 1), help="chance an absent tag is added")
@handle_errors
def synth(out: Path, num_train, num_val, num_weak, size, seed, tag_drop, tag_add) -> None:
    from .synth import write_dataset

    if out.exists() and any(out.iterdir()):
        raise BadInput(f"{out} exists and is not empty; choose a new folder or remove it")
    counts = write_dataset(out, num_train=num_train, num_val=num_val, num_weak=num_weak, size=size, seed=seed,
                           tag_drop=tag_drop, tag_add=tag_add)
    click.echo(f"wrote {out}: " + ", ".join(f"{n} {k}" for k, n in counts.items()))


@click.command(help="Train DIS: stage 1 on fully labelled images, stage 2 adds tag-only images.")
@click.option("--data", required=True, type=click.Path(path_type=Path), help="data set folder (VOC or folder layout)")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="run folder: best.pt, last.pt, metrics.json")
@click.option("--stage", default=1, show_default=True, type=click.Choice(["1", "2"]))
@click.option("--init", type=click.Path(path_type=Path), help="start from this checkpoint (its architecture; stage 2 from stage 1's best.pt)")
@click.option("--backbone", default="resnet18", show_default=True,
              type=click.Choice(["resnet18", "resnet34", "resnet50", "resnet101", "mobilenet_v3_large"]))
@click.option("--stages", default=4, show_default=True, type=click.IntRange(2, 4), help="resnet stages kept")
@click.option("--output-stride", default=8, show_default=True, type=click.Choice(["8", "16"]))
@click.option("--pretrained", is_flag=False, flag_value="imagenet", default=None, metavar="[PATH_OR_URL]",
              help="start the backbone from torchvision's ImageNet weights (downloaded once into torch's cache), "
                   "or from a state dict file or URL")
@click.option("--size", default=256, show_default=True, type=click.IntRange(32), help="training crop (pixels)")
@click.option("--epochs", default=10, show_default=True, type=click.IntRange(1))
@click.option("--batch", default=8, show_default=True, type=click.IntRange(1), help="global batch")
@click.option("--optimizer", default="sgd", show_default=True, type=click.Choice(["sgd", "adamw"]))
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="[default: 0.01 sgd, 0.001 adamw]")
@click.option("--iters-train", default=5, show_default=True, type=click.IntRange(0), help="refinement steps for stage-2 pseudo labels")
@click.option("--iters-test", default=0, show_default=True, type=click.IntRange(0), help="refinement steps scored for best.pt")
@click.option("--step-size", default=30.0, show_default=True, type=click.FloatRange(min=0), help="refinement step size alpha")
@click.option("--tag-weight", default=0.3, show_default=True, type=click.FloatRange(min=0), help="tag term weight in the energy")
@click.option("--tag-gate", default="none", show_default=True, type=click.Choice(["multiply", "log", "none"]),
              help="how tag probabilities gate the labelmap (multiply: the paper's u3*sigmoid(v3))")
@click.option("--weak-weight", default=1.0, show_default=True, type=click.FloatRange(min=0), help="stage 2: weight of the weak images' loss")
@click.option("--pseudo-threshold", default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help="stage 2: ignore pseudo-label pixels less confident than this")
@click.option("--eval-iters", default="", help="extra refinement step counts scored each epoch, e.g. 1,3")
@click.option("--max-train", type=click.IntRange(1), help="use only the first N fully labelled images")
@click.option("--steps-per-epoch", type=click.IntRange(1), help="optimizer steps per epoch [default: one pass over the larger set]")
@click.option("--freeze-bn", is_flag=True, help="keep batch-norm statistics fixed")
@click.option("--device", default="cpu", show_default=True, type=click.Choice(["cpu", "cuda"]))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--resume", is_flag=True, help="continue RUN/last.pt exactly where it stopped")
@handle_errors
def train_cli(data, out, stage, init, backbone, stages, output_stride, pretrained, size, epochs, batch, optimizer, lr,
              iters_train, iters_test, step_size, tag_weight, tag_gate, weak_weight, pseudo_threshold, eval_iters, max_train, steps_per_epoch, freeze_bn, device, seed, resume) -> None:
    setup_logging()
    import torch

    from disseg.runtime.dataset import read_classes

    from .config import DISConfig
    from .engine import TrainOptions, fit

    torch.set_num_threads(max(1, torch.get_num_threads()))
    if stage == "2" and init is None and not resume:
        raise BadInput("--stage 2 needs --init CKPT (the stage-1 best.pt) or --resume")
    if (out / "last.pt").exists() and not resume:
        raise BadInput(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    if not Path(data).is_dir():
        raise BadInput(f"{data}: no such data folder; make one with: dis-data synth {data}")
    cfg = DISConfig(
        class_names=read_classes(Path(data)), backbone=backbone, stages=stages, output_stride=int(output_stride), size=size,
        iters_train=iters_train, iters_test=iters_test, step_size=step_size, tag_weight=tag_weight, weak_weight=weak_weight,
        pseudo_threshold=pseudo_threshold, tag_gate=tag_gate,
    )
    try:
        cfg.validate()
    except ValueError as err:
        raise BadInput(str(err)) from None
    cfg.feature_grid(size, size)
    opts = TrainOptions(
        data=Path(data), out=Path(out), stage=int(stage), init=init, epochs=epochs, batch=batch, optimizer=optimizer, lr=lr,
        device=device, seed=seed, resume=resume, pretrained=pretrained, max_train=max_train, freeze_bn=freeze_bn, steps_per_epoch=steps_per_epoch,
        eval_iters=tuple(parse_int_list(eval_iters, name="--eval-iters")) if eval_iters else (),
    )
    result = fit(cfg, opts)
    click.echo(f"best val mIoU {result['best_val_miou']:.2f}; wrote {out}/best.pt, last.pt, metrics.json")


@click.command(help="Score a model (.pt checkpoint, .onnx or TensorRT engine) on a data split.")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--data", required=True, type=click.Path(path_type=Path))
@click.option("--split", default="val", show_default=True, type=click.Choice(["train", "val", "weak"]),
              help="'weak' puts each image's (noisy) tags into the energy and reports input vs cleaned tag F1")
@click.option("--iters", default=None, help="refinement step counts to score, e.g. 0,1,3 [default: the model's own]")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="write the results here")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path), help="draw mIoU (and tag F1) against refinement steps (PNG)")
@click.option("--batch", default=8, show_default=True, type=click.IntRange(1))
@click.option("--device", default="cpu", show_default=True, type=click.Choice(["cpu", "cuda"]))
@click.option("--backend", default="auto", show_default=True, type=click.Choice(["auto", "onnxruntime", "tensorrt"]),
              help="for .onnx and engine files")
@click.option("--step-size", type=click.FloatRange(min=0), help="override the checkpoint's refinement step size (tuning)")
@click.option("--tag-weight", type=click.FloatRange(min=0), help="override the tag term's weight in the energy (tuning)")
@click.option("--tag-gate", type=click.Choice(["multiply", "log", "none"]), help="override how tags gate the labelmap")
@handle_errors
def eval_cli(model: Path, data, split, iters, json_path, plot_path, batch, device, backend, step_size, tag_weight, tag_gate) -> None:
    setup_logging()
    if not model.is_file():
        raise BadInput(f"{model}: no such model file")
    iters_list = parse_int_list(iters, name="--iters") if iters else None
    if model.suffix == ".pt":
        overrides = {k: v for k, v in (("step_size", step_size), ("tag_weight", tag_weight), ("tag_gate", tag_gate)) if v is not None}
        results = _eval_checkpoint(model, data, split, iters_list, batch, device, overrides)
    else:
        if step_size is not None or tag_weight is not None or tag_gate is not None:
            raise BadInput("--step-size, --tag-weight and --tag-gate apply to .pt checkpoints; an exported model has them built in")
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
        raise BadInput("--plot needs matplotlib: pip install 'disseg[plot]' (the --json results hold the same numbers)") from None
    from disseg.runtime.atomic import atomic_write

    steps = [r["iters"] for r in results]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(steps, [r["miou"] for r in results], marker="o", label="mIoU")
    if any(r.get("tag_f1") is not None for r in results):
        ax.plot(steps, [r.get("tag_f1") for r in results], marker="s", label="tag F1")
    ax.set(xlabel="refinement steps t", ylabel="%", title=f"{model.name} on {split}", xticks=steps)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
    click.echo(f"wrote {path}")


def _eval_checkpoint(path: Path, data: Path, split: str, iters: list[int] | None, batch: int, device: str,
                     overrides: dict) -> list[dict]:
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
    return evaluate(model.to(dev), loader, iters=iters if iters is not None else [model.cfg.iters_test], device=dev,
                    energy_tags=split == "weak")
