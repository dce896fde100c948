"""The instruction-set reader on the /proc/cpuinfo files in tests/cpuinfo: the Zen 5 one is this project's
development machine's own; the others are written in the form Linux prints for those CPUs (not captured on them)."""

from pathlib import Path

import pytest

from disseg.runtime.cpu import read_cpu

SAMPLES = Path(__file__).resolve().parents[1] / "cpuinfo"


def _read(name: str):
    return read_cpu((SAMPLES / name).read_text())


def test_x86_with_vnni():
    cpu = _read("x86_amd_epyc_zen5_vnni.txt")  # this project's development machine, 2026-12-02
    assert cpu.model == "AMD EPYC" and cpu.arch == "x86_64"
    assert {"AVX2", "AVX-512", "AVX-512 VNNI", "AVX-VNNI", "AVX-512 BF16"} <= set(cpu.features)
    assert "AMX-INT8" not in cpu.features and cpu.int8_dot
    assert cpu.int8_verdict().startswith("INT8 on ONNX Runtime is expected to pay on this CPU (AVX-512 VNNI")


def test_x86_avx2_only():
    cpu = _read("x86_amd_epyc_zen2_avx2.txt")
    assert cpu.model == "AMD EPYC 7B12" and cpu.features == ("AVX2",) and not cpu.int8_dot
    verdict = cpu.int8_verdict()
    assert "not expected to pay" in verdict and "it has AVX2" in verdict and "slower than FP32" in verdict


def test_jetson_orin_cortex_a78ae_has_dotprod():
    cpu = _read("aarch64_jetson_orin_cortex_a78ae.txt")
    assert cpu.model == "Cortex-A78AE" and cpu.arch == "aarch64"
    assert cpu.features == ("dotprod", "fp16") and cpu.int8_dot  # no i8mm, no bf16 on Orin's cores


def test_cortex_a57_without_dotprod():
    cpu = _read("aarch64_cortex_a57_no_dotprod.txt")  # Jetson Nano / TX2's cores
    assert cpu.model == "Cortex-A57" and cpu.features == () and not cpu.int8_dot
    assert "it has none of the instructions listed" in cpu.int8_verdict()


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="no /proc/cpuinfo on this system")
def test_this_machine_is_read():
    cpu = read_cpu()
    assert cpu.model and cpu.arch
    flags = Path("/proc/cpuinfo").read_text()
    assert cpu.int8_dot == any(
        f" {flag}" in flags for flag in ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")
    )


def test_a_named_cpuinfo_that_is_missing_is_an_error(monkeypatch, tmp_path):
    from disseg.runtime.errors import BadInput

    monkeypatch.setenv("DISSEG_CPUINFO", str(tmp_path / "absent.txt"))
    with pytest.raises(BadInput, match="DISSEG_CPUINFO=.*absent.txt: cannot read it"):
        read_cpu()
