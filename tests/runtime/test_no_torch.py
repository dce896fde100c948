import subprocess
import sys

BLOCK = (
    "import sys, importlib.abc\n"
    "class Block(importlib.abc.MetaPathFinder):\n"
    "    def find_spec(self, name, path, target=None):\n"
    "        if name.split('.')[0] in ('torch', 'torchvision'):\n"
    "            raise ImportError('torch is blocked in this test')\n"
    "sys.meta_path.insert(0, Block())\n"
)


def test_runtime_imports_with_torch_blocked():
    code = BLOCK + (
        "import disseg.runtime, disseg.runtime.cli, disseg.runtime.pipeline, disseg.runtime.evaluate, "
        "disseg.runtime.dataset\n"
        "from disseg.runtime import Segmenter\n"
        "assert 'torch' not in sys.modules\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_segmenter_runs_with_torch_blocked(tiny_onnx):
    code = BLOCK + (
        "import numpy as np\n"
        "from disseg.runtime import Segmenter\n"
        f"with Segmenter({str(tiny_onnx)!r}, backend='onnxruntime') as seg:\n"
        "    r = seg(np.zeros((50, 70, 3), np.uint8))\n"
        "assert r.labels.shape == (50, 70) and 'torch' not in sys.modules\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
