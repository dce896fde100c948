"""What this CPU offers the instructions that decide INT8 and FP16/BF16 inference speed, read from /proc/cpuinfo.

ONNX Runtime's INT8 kernels (QLinearConv, MatMulInteger) gain over FP32 where the CPU has int8 dot-product
instructions: AVX-512 VNNI, AVX-VNNI or AMX on x86; dotprod or i8mm on ARM. Without them an INT8 model can be slower
than FP32 (measured: 0.87x-1.02x on an AVX2-only AMD EPYC). Every benchmark figure records this, and dis-doctor,
dis-calibrate and the Segmenter say it in words."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BadInput

# /proc/cpuinfo flag -> the name people know it by, in the order a report lists them
X86_FEATURES = {
    "avx2": "AVX2",
    "avx512f": "AVX-512",
    "avx512_vnni": "AVX-512 VNNI",
    "avx_vnni": "AVX-VNNI",
    "avx512_bf16": "AVX-512 BF16",
    "avx512_fp16": "AVX-512 FP16",
    "amx_int8": "AMX-INT8",
    "amx_bf16": "AMX-BF16",
}
ARM_FEATURES = {"asimddp": "dotprod", "i8mm": "i8mm", "asimdhp": "fp16", "bf16": "bf16", "sve": "SVE", "sve2": "SVE2"}
INT8_DOT = {"avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm"}
# ARM "CPU implementer" and "CPU part" -> core name (the Jetson cores and common servers)
ARM_PARTS = {
    ("0x41", "0xd03"): "Cortex-A53",
    ("0x41", "0xd07"): "Cortex-A57",
    ("0x41", "0xd08"): "Cortex-A72",
    ("0x41", "0xd0b"): "Cortex-A76",
    ("0x41", "0xd0c"): "Neoverse-N1",
    ("0x41", "0xd40"): "Neoverse-V1",
    ("0x41", "0xd41"): "Cortex-A78",
    ("0x41", "0xd42"): "Cortex-A78AE",
    ("0x41", "0xd49"): "Neoverse-N2",
    ("0x41", "0xd4f"): "Neoverse-V2",
    ("0x4e", "0x004"): "NVIDIA Carmel",
}


@dataclass(frozen=True)
class CpuInfo:
    model: str  # "AMD EPYC", "Cortex-A78AE", ...
    arch: str  # "x86_64", "aarch64", ...
    features: tuple[str, ...] = field(default=())  # the known names of the features present, e.g. ("AVX2", ...)
    int8_dot: bool = False  # int8 dot-product instructions: INT8 on ONNX Runtime is expected to pay

    def as_dict(self) -> dict:
        return {"model": self.model, "arch": self.arch, "features": list(self.features), "int8_dot": self.int8_dot}

    def int8_verdict(self) -> str:
        """Whether INT8 on ONNX Runtime's CPU provider is expected to be faster here, in words."""
        if self.int8_dot:
            dot = [f for f in self.features if f in ("AVX-512 VNNI", "AVX-VNNI", "AMX-INT8", "dotprod", "i8mm")]
            return f"INT8 on ONNX Runtime is expected to pay on this CPU ({', '.join(dot)})"
        have = ", ".join(self.features) or "none of the instructions listed"
        return (
            f"INT8 on ONNX Runtime is not expected to pay on this CPU: it has no int8 dot-product instructions "
            f"(VNNI, AMX, dotprod or i8mm; it has {have}); an INT8 model can run slower than FP32 here"
        )


def read_cpu(text: str | None = None, *, machine: str | None = None) -> CpuInfo:
    """The CPU described by /proc/cpuinfo's `text` (this machine's when None; $DISSEG_CPUINFO names another file, to
    see what disseg says on another machine). Without a /proc/cpuinfo (macOS, Windows) the model is the platform's
    word for it and no features are known."""
    machine = machine or platform.machine()
    if text is None:
        asked = os.environ.get("DISSEG_CPUINFO")
        try:
            text = Path(asked or "/proc/cpuinfo").read_text(errors="replace")
        except OSError as err:
            if asked:  # a file named on purpose that is not there is the user's mistake, not another machine
                raise BadInput(
                    f"DISSEG_CPUINFO={asked}: cannot read it ({err.strerror}); name a /proc/cpuinfo copy"
                ) from None
            return CpuInfo(platform.processor() or machine, machine)
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:  # the first processor's entry speaks for all
            fields[key.strip()] = value.strip()
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    known = {**X86_FEATURES, **ARM_FEATURES}
    features = tuple(dict.fromkeys(name for flag, name in known.items() if flag in flags))
    if "Features" in fields and "flags" not in fields:  # ARM's form of the file
        part = (fields.get("CPU implementer", "").lower(), fields.get("CPU part", "").lower())
        return CpuInfo(
            ARM_PARTS.get(part, f"ARM core {part[0]}/{part[1]}"), "aarch64", features, bool(flags & INT8_DOT)
        )
    model = fields.get("model name") or platform.processor() or machine
    return CpuInfo(model, "x86_64" if "flags" in fields else machine, features, bool(flags & INT8_DOT))


def machine_facts() -> dict:
    """This machine's CPU as every benchmark JSON and dis-bench records it beside its numbers."""
    cpu = read_cpu()
    return {**cpu.as_dict(), "cores": os.cpu_count(), "int8": cpu.int8_verdict()}
