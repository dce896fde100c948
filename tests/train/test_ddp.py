import os
import subprocess

from disseg.train.checkpoint import load_checkpoint
from tests.conftest import BIN, run_cmd


def test_two_gloo_processes_match_one(tiny_data, tmp_path):
    """torchrun with 2 CPU processes (gloo) and a global batch of 4 gives the single-process result:
    per-rank batches interleave the same permutation, augmentation is seeded per sample, and the loss
    is a mean of per-image means, so all-reduced gradients equal the single-process ones."""
    args = [
        "--data",
        str(tiny_data),
        "--stages",
        "2",
        "--size",
        "64",
        "--batch",
        "4",
        "--epochs",
        "1",
        "--optimizer",
        "adamw",
        "--freeze-bn",
        "--seed",
        "3",
    ]
    run_cmd("dis-train", *args, "--out", str(tmp_path / "single"), check=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            str(BIN / "torchrun"),
            "--standalone",
            "--nproc_per_node",
            "2",
            str(BIN / "dis-train"),
            *args,
            "--dist-backend",
            "gloo",
            "--out",
            str(tmp_path / "ddp"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = load_checkpoint(tmp_path / "single" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "ddp" / "last.pt")["model"]
    moved = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    scale = max(float(a[k].float().abs().max()) for k in a if a[k].is_floating_point())
    assert moved < 1e-4 * scale, moved
    assert a.keys() == b.keys()
