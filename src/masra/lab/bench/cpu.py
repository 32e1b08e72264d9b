"""The CPU a benchmark runs on, printed above every ``masra bench`` table: its model, the instruction-set level
torch dispatches its kernels to, and whether it has bf16 and AMX instructions (Linux /proc/cpuinfo flags).
Without native bf16, torch emulates bf16 arithmetic in float32 instructions: such timings say nothing about
bf16 on a CPU that has it."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # either gives bf16 products in hardware


@dataclass(frozen=True)
class CpuCapability:
    model: str
    isa: str  # torch.backends.cpu.get_cpu_capability(): "DEFAULT", "AVX2", "AVX512", ...
    native_bf16: bool | None  # None: the CPU's flags could not be read
    amx: bool | None  # AMX tiles (amx_tile)

    @property
    def bf16_emulated(self) -> bool:
        return self.native_bf16 is False

    def describe(self) -> str:
        def known(value: bool | None, yes: str, no: str) -> str:
            return "unknown" if value is None else yes if value else no

        bf16 = known(self.native_bf16, "native", "emulated (no avx512_bf16 / amx_bf16)")
        return f"CPU: {self.model}, torch ISA {self.isa}, bf16 {bf16}, AMX {known(self.amx, 'yes', 'no')}"


def read_cpuinfo(text: str) -> tuple[str | None, set[str] | None]:
    """(model name, flags) of the first processor in /proc/cpuinfo's ``text``; None for a field it lacks."""
    model = flags = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip()
        elif key == "flags" and flags is None:
            flags = set(value.split())
    return model, flags


def cpu_capability(cpuinfo: Path = CPUINFO) -> CpuCapability:
    """This machine's capability; where ``cpuinfo`` cannot be read (not Linux), bf16 and AMX are unknown."""
    import torch

    try:
        model, flags = read_cpuinfo(cpuinfo.read_text())
    except OSError:
        model, flags = None, None
    return CpuCapability(
        model=model or platform.processor() or platform.machine(),
        isa=torch.backends.cpu.get_cpu_capability(),
        native_bf16=None if flags is None else any(flag in flags for flag in BF16_FLAGS),
        amx=None if flags is None else "amx_tile" in flags,
    )
