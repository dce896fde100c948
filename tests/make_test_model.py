"""Export a tiny model for the runtime-only test environment: python tests/make_test_model.py OUT.onnx

Also writes OUT.scene-tags.onnx: the same checkpoint exported with --scene-tags (energy+mask) and a dynamic batch,
for the scene-tag tests of the environments without torch (scene_tags_model)."""

import subprocess
import sys
import tempfile
from pathlib import Path

BIN = Path(sys.executable).parent


def scene_tags_model(model: Path) -> Path:
    """Where the tagged sibling of a test model is."""
    return model.with_suffix(".scene-tags.onnx")


def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data, run = Path(tmp) / "data", Path(tmp) / "run"
        subprocess.run(
            [BIN / "dis-data", "synth", data, "--num-train", "8", "--num-val", "4", "--num-weak", "0", "--size", "64"],
            check=True,
        )
        subprocess.run(
            [
                BIN / "dis-train",
                "--data",
                data,
                "--out",
                run,
                "--stages",
                "2",
                "--size",
                "64",
                "--epochs",
                "1",
                "--batch",
                "4",
            ],
            check=True,
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [BIN / "dis-export", run / "best.pt", "--iters", "3", "--outputs", "labels,tags", "-o", out, "--force"],
            check=True,
        )
        tagged = ["--scene-tags", "--dynamic-batch", "-o", scene_tags_model(out)]
        subprocess.run(
            [BIN / "dis-export", run / "best.pt", "--iters", "3", "--outputs", "labels,tags", *tagged, "--force"],
            check=True,
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
