"""runtime/cpp/tools: the ONNX Runtime SDK script takes its Debian mirror from the machine's apt sources."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "runtime" / "cpp" / "tools" / "onnxruntime-from-registries.sh"


def _mirror(etc: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), "--print-mirror"],
        capture_output=True,
        text=True,
        env={**os.environ, "APT_ETC": str(etc), **env},
        timeout=30,
    )


def test_mirror_comes_from_deb822_sources_before_security(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example.test/archive-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example.test/archive\nSuites: bookworm\n"
    )
    assert _mirror(tmp_path).stdout.strip() == "http://mirror.example.test/archive"


def test_mirror_from_one_line_list_with_options(tmp_path):
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb [arch=amd64 signed-by=/k.gpg] https://apt.example.test/archive bookworm main\n"
    )
    assert _mirror(tmp_path).stdout.strip() == "https://apt.example.test/archive"


def test_no_mirror_is_one_line_and_exit_2(tmp_path):
    proc = subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path / "sdk")],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "APT_ETC": str(tmp_path)},
    )
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "DEBIAN_MIRROR" in proc.stderr


def test_no_host_name_is_written_into_the_script():
    text = SCRIPT.read_text()
    assert "debian.org" not in text and "http://" not in text.replace("[a-z+]+:\\/\\/", "")
