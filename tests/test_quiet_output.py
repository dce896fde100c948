"""Every command's output is ours: what torch.onnx, onnxscript, onnxconverter-common, ONNX Runtime's quantizer and
TensorRT's builder say goes to the command's log file, named in one line, never to the terminal."""

import re
from pathlib import Path

import pytest

from tests.conftest import run_cmd

OUR_LOG_LINE = re.compile(r"^third-party messages \((\d+) lines\): (.+\.log)$")
# what third-party output looks like when it leaks: Python warnings, library paths, optimizer chatter, tracebacks
FOREIGN = re.compile(
    r"Warning\b|warnings\.warn|site-packages|Traceback|Skipping constant folding|unused functions|PassManager|"
    r"Replaced initializer|rewrite rules|\[W:onnxruntime|\[TRT\]"
)


def _lines(proc) -> list[str]:
    return [line for line in re.split(r"[\r\n]", proc.stdout + proc.stderr) if line.strip()]


def _check_ours(proc, log_dir, *, expect_log: bool) -> list[str]:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = _lines(proc)
    leaked = [line for line in lines if FOREIGN.search(line)]
    assert not leaked, f"third-party output on the terminal: {leaked[:5]}"
    long = [line for line in lines if len(line) > 200]
    assert not long, f"lines over 200 characters: {[line[:80] + '...' for line in long]}"
    named = [m for m in map(OUR_LOG_LINE.match, lines) if m]
    if expect_log:
        assert len(named) == 1, f"expected one line naming the log file, got {lines}"
        count, path = int(named[0].group(1)), named[0].group(2)
        assert path.startswith(str(log_dir)), path
        captured = open(path).read().splitlines()
        assert len(captured) == count > 0
        shown = set(lines)
        assert not [c for c in captured if c in shown or c.split(": ", 1)[-1] in shown], "a captured line was shown"
        return captured
    return []


@pytest.fixture(scope="module")
def fp32_model(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("quiet") / "m.onnx"
    run_cmd("dis-export", str(tiny_run / "best.pt"), "--iters", "1", "-o", str(out), check=True)
    return out


def test_fp16_export_is_quiet(tiny_run, tmp_path, log_dir):
    proc = run_cmd("dis-export", str(tiny_run / "best.pt"), "--iters", "1", "--fp16", "-o", str(tmp_path / "m.onnx"))
    captured = _check_ours(proc, log_dir, expect_log=True)
    assert any("float16" in line or "onnxscript" in line or "optimizer" in line.lower() for line in captured), captured
    assert any(line.startswith("wrote ") for line in _lines(proc))


def test_calibration_is_quiet(fp32_model, tiny_data, tmp_path, log_dir):
    proc = run_cmd("dis-calibrate", str(fp32_model), "--data", str(tiny_data), "-o", str(tmp_path / "q.onnx"))
    _check_ours(proc, log_dir, expect_log=False)
    assert any(line.startswith("wrote ") for line in _lines(proc))


def test_engine_build_is_quiet(fp32_model, tmp_path, log_dir):
    pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX: pip install -e '.[tensorrt-rtx]'")
    engine = tmp_path / "m.engine"
    proc = run_cmd("dis-export", str(fp32_model), "--engine", "--gpu-arch", "sm86", "-o", str(engine))
    _check_ours(proc, log_dir, expect_log=False)
    assert engine.is_file()
    # rebuilt: TensorRT for RTX then reports, as errors on this GPU-less machine, why it cannot use its timing cache
    proc = run_cmd("dis-export", str(fp32_model), "--engine", "--gpu-arch", "sm86", "-o", str(engine), "--force")
    captured = _check_ours(proc, log_dir, expect_log=True)
    assert all(line.startswith("tensorrt: ") for line in captured), captured


def test_a_failure_shows_the_last_third_party_lines(capsys, log_dir):
    """A command that fails after a library spoke shows that library's last lines (marked), then our one line; the
    rest is in the log file."""
    import logging
    import warnings

    from disseg.runtime.cli_util import FAILURE_TAIL, handle_errors, setup_logging, third_party_output
    from disseg.runtime.errors import DisError

    @handle_errors
    def command():
        setup_logging()
        logging.getLogger("disseg.export").info("exporting")
        for i in range(8):
            logging.getLogger("onnxscript.optimizer").info("pass %d changed nothing", i)
        with warnings.catch_warnings():
            warnings.simplefilter("always")  # shown even if an earlier test raised it from the same line
            warnings.warn("float32 truncated", UserWarning, stacklevel=1)
        with third_party_output():
            print("Applied 3 rewrite rules")
        raise DisError("the parity gate refused the model")

    with pytest.raises(SystemExit) as stop:
        command()
    assert stop.value.code == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "exporting"
    shown = [line for line in err if line.startswith("  | ")]
    assert len(shown) == FAILURE_TAIL and shown[-1] == "  | Applied 3 rewrite rules", err
    assert any("float32 truncated" in line for line in shown), err
    assert OUR_LOG_LINE.match(err[-2]) and err[-1] == "failed: the parity gate refused the model", err
    saved = open(OUR_LOG_LINE.match(err[-2]).group(2)).read().splitlines()
    assert saved[0] == "onnxscript.optimizer: pass 0 changed nothing" and len(saved) >= 10  # a warning: 2 lines


def test_output_written_a_character_at_a_time_is_logged_a_line_at_a_time(capsys, log_dir):
    """Triton's server output reaches us one character at a time (pytriton forwards it so): the log holds its lines,
    and each run keeps a log of its own (the newest few of a command stay)."""
    import sys

    from disseg.runtime.cli_util import KEEP_LOGS, handle_errors, setup_logging, third_party_output

    @handle_errors
    def command():
        setup_logging()
        with third_party_output():
            for char in "I1203 model loaded ok\nW1203 pinned memory pool\nno newline at the end":
                sys.stdout.write(char)

    paths = []
    for _ in range(KEEP_LOGS + 2):
        command()
        line = capsys.readouterr().err.splitlines()[-1]
        paths.append(OUR_LOG_LINE.match(line).group(2))
    assert open(paths[-1]).read().splitlines() == [
        "I1203 model loaded ok", "W1203 pinned memory pool", "no newline at the end",
    ]  # fmt: skip
    assert len(set(paths)) == len(paths)  # a file per run: named by time and pid, or a later run's lost the earlier's
    kept = sorted(str(p) for p in log_dir.glob(f"{Path(paths[0]).name.split('.')[0]}.*.log"))
    assert kept == sorted(paths[-KEEP_LOGS:])
