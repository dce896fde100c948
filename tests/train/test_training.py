import json
import signal
import subprocess

import pytest
import torch

from disseg.train.checkpoint import load_checkpoint
from tests.conftest import BIN, run_cmd, wait_for

TINY = ["--stages", "2", "--size", "64", "--batch", "4", "--optimizer", "adamw", "--step-size", "20"]


def test_stage1_run_writes_checkpoints_and_metrics(tiny_run):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [0, 1]
    assert metrics["epochs"][1]["loss"] < metrics["epochs"][0]["loss"] * 1.5
    best = load_checkpoint(tiny_run / "best.pt")  # weights_only=True inside
    last = load_checkpoint(tiny_run / "last.pt")
    assert last["epoch"] == 1 and best["config"]["backbone"] == "resnet18" and best["config"]["stages"] == 2
    assert best["config"]["step_size"] == 20 and "optimizer" in last and "rng" in last and "scheduler" in last
    assert metrics["best_val_miou"] == max(e["val"][0]["miou"] for e in metrics["epochs"])


def test_training_curves_csv_and_png(tiny_run):
    import csv

    rows = list(csv.DictReader((tiny_run / "metrics.csv").open()))
    epochs = json.loads((tiny_run / "metrics.json").read_text())["epochs"]
    assert [int(r["epoch"]) for r in rows] == [e["epoch"] for e in epochs] and all(r["stage"] == "1" for r in rows)
    for row, entry in zip(rows, epochs):
        # the loss is its terms summed with the default weights (lambda_tags = lambda_image = 1)
        assert abs(float(row["loss"]) - (float(row["ce"]) + float(row["tag_bce"]) + float(row["image_mse"]))) < 1e-4
        assert float(row["val_miou"]) == entry["val"][0]["miou"] and float(row["lr"]) > 0 and float(row["seconds"]) > 0
    assert float(rows[1]["lr"]) < float(rows[0]["lr"])  # the polynomial schedule decays
    assert (tiny_run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _weights(path):
    return load_checkpoint(path)["model"]


def test_resume_after_a_kill_continues_exactly(tiny_data, tmp_path):
    args = ["--data", str(tiny_data), *TINY, "--epochs", "3", "--seed", "7"]
    run_cmd("dis-train", *args, "--out", str(tmp_path / "straight"), check=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [str(BIN / "dis-train"), *args, "--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for(lambda: (killed / "last.pt").exists(), proc=proc, what="the first epoch's last.pt")  # ready: killed after
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert load_checkpoint(killed / "last.pt")["epoch"] < 2  # it really was stopped early
    run_cmd("dis-train", *args, "--out", str(killed), "--resume", check=True)

    a, b = _weights(tmp_path / "straight" / "last.pt"), _weights(killed / "last.pt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key

    def untimed(run):  # wall-clock seconds are the one field a resumed run cannot repeat
        return [
            {k: v for k, v in e.items() if k != "seconds"}
            for e in json.loads((run / "metrics.json").read_text())["epochs"]
        ]

    assert untimed(killed) == untimed(tmp_path / "straight")
    assert len((killed / "metrics.csv").read_text().splitlines()) == 4  # header + 3 epochs, the killed run's rows kept


def test_stage2_trains_on_tag_only_images(tiny_data, tiny_run, tmp_path):
    out = tmp_path / "s2"
    run_cmd(
        "dis-train",
        "--data",
        str(tiny_data),
        "--out",
        str(out),
        "--stage",
        "2",
        "--init",
        str(tiny_run / "best.pt"),
        "--epochs",
        "1",
        "--batch",
        "4",
        "--iters-train",
        "2",
        "--pseudo-threshold",
        "0.5",
        check=True,
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stage"] == 2 and metrics["epochs"][0]["weak_loss"] > 0
    cfg = load_checkpoint(out / "best.pt")["config"]
    assert cfg["iters_train"] == 2 and cfg["pseudo_threshold"] == 0.5 and cfg["stages"] == 2  # architecture from --init


def test_eval_json_sweeps_iterations(tiny_data, tiny_run, tmp_path):
    run_cmd(
        "dis-eval",
        str(tiny_run / "best.pt"),
        "--data",
        str(tiny_data),
        "--iters",
        "0,1,3",
        "--json",
        str(tmp_path / "e.json"),
        check=True,
    )
    report = json.loads((tmp_path / "e.json").read_text())
    assert [r["iters"] for r in report["results"]] == [0, 1, 3]
    for r in report["results"]:
        assert 0 <= r["miou"] <= 100 and 0 <= r["pixel_acc"] <= 100 and set(r["per_class_iou"]) >= {"background"}
        assert r["tag_f1"] is None or 0 <= r["tag_f1"] <= 100
    weak = run_cmd(
        "dis-eval", str(tiny_run / "best.pt"), "--data", str(tiny_data), "--split", "weak", "--iters", "0,2", check=True
    )
    assert "input tags" in weak.stdout


def test_eval_plot(tiny_data, tiny_run, tmp_path):
    plot = tmp_path / "iters.png"
    run_cmd(
        "dis-eval",
        str(tiny_run / "best.pt"),
        "--data",
        str(tiny_data),
        "--iters",
        "0,2",
        "--plot",
        str(plot),
        check=True,
    )
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 5000


@pytest.mark.parametrize(
    "case", ["no_data", "stage2_no_init", "existing_run", "corrupt_init", "foreign_init", "bad_size"]
)
def test_bad_input_is_one_line_and_exit_2(tiny_data, tiny_run, tmp_path, case):
    base = ["--data", str(tiny_data), "--out", str(tmp_path / "o"), *TINY, "--epochs", "1"]
    if case == "no_data":
        args = ["--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]
    elif case == "stage2_no_init":
        args = [*base, "--stage", "2"]
    elif case == "existing_run":
        args = ["--data", str(tiny_data), "--out", str(tiny_run)]
    elif case == "corrupt_init":
        (tmp_path / "bad.pt").write_bytes(b"PK\x03\x04 truncated zip")
        args = [*base, "--stage", "2", "--init", str(tmp_path / "bad.pt")]
    elif case == "foreign_init":
        torch.save({"state_dict": {}}, tmp_path / "other.pt")
        args = [*base, "--stage", "2", "--init", str(tmp_path / "other.pt")]
    else:
        args = [a if a != "64" else "60" for a in base]
    proc = run_cmd("dis-train", *args)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_one_epoch_or_one_point_plots_on_readable_axes():
    """One epoch (or one t in dis-eval --plot) used to be drawn on a -0.04..0.04 axis."""
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from disseg.train.curves import readable_axes

    fig, (loss, miou) = plt.subplots(1, 2)
    loss.plot([0], [2.5], marker="o")
    miou.plot([0], [43.1], marker="o")
    readable_axes(loss, [0])
    readable_axes(miou, [0], percent=True)
    assert loss.get_xlim() == (-1, 1) and list(loss.get_xticks()) == [0]
    assert loss.get_ylim()[0] == 0 and loss.get_ylim()[1] > 2.5
    assert miou.get_ylim() == (0, 100)
    plt.close(fig)
