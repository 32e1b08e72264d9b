"""`masra bench` names the CPU's capability above every table, and bf16 rows say when the CPU only emulates
bf16."""

from __future__ import annotations

import pytest
import torch

from masra.lab.bench.cpu import cpu_capability, read_cpuinfo
from masra.lab.bench.measure import Measurement
from masra.lab.bench.model_step import ModelRow, model_table


def _cpuinfo(tmp_path, flags: str):
    path = tmp_path / "cpuinfo"
    processor = f"processor\t: {{n}}\nmodel name\t: Test CPU 9000\nflags\t\t: fpu sse2 avx2 {flags}\n\n"
    path.write_text(processor.format(n=0) + processor.format(n=1).replace("Test CPU 9000", "Other CPU"))
    return path


@pytest.mark.parametrize(
    ("flags", "native", "amx"),
    [("avx512f", False, False), ("avx512f avx512_bf16", True, False), ("amx_bf16 amx_tile", True, True)],
)
def test_native_bf16_and_amx_come_from_the_cpuinfo_flags(tmp_path, flags, native, amx):
    capability = cpu_capability(_cpuinfo(tmp_path, flags))
    assert capability.model == "Test CPU 9000"  # the first processor's
    assert capability.isa == torch.backends.cpu.get_cpu_capability()
    assert (capability.native_bf16, capability.amx, capability.bf16_emulated) == (native, amx, not native)
    described = capability.describe()
    assert "Test CPU 9000" in described and capability.isa in described
    assert ("bf16 native" in described) == native and ("bf16 emulated" in described) == (not native)
    assert f"AMX {'yes' if amx else 'no'}" in described


def test_an_unreadable_cpuinfo_leaves_bf16_unknown_not_emulated(tmp_path):
    capability = cpu_capability(tmp_path / "missing")
    assert capability.native_bf16 is None and capability.amx is None and not capability.bf16_emulated
    assert "bf16 unknown" in capability.describe() and capability.model


def test_read_cpuinfo_without_flags():
    assert read_cpuinfo("processor : 0\nFeatures : fp asimd bf16\n") == (None, None)


def _row(variant: str, amp: str) -> ModelRow:
    return ModelRow(variant, 10, Measurement(0.2, 2**20, 0.3, 0.1), None, None, amp=amp)


@pytest.mark.parametrize(("emulated", "label"), [(True, "masra (bf16, emulated)"), (False, "masra (bf16)")])
def test_bf16_rows_are_marked_emulated_only_where_the_cpu_lacks_bf16(emulated, label):
    table = model_table([_row("baseline", "none"), _row("masra", "bf16")], bf16_emulated=emulated)
    assert [row[0] for row in table.rows] == ["baseline", label]
