"""The printed table of a benchmark: each benchmark module renders its rows into a :class:`BenchTable`
(``sora_table``, ``model_table``, ...), ``masra bench`` prints it; the formatting of its cells lives here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class BenchTable:
    columns: list[str]  # every column right-aligned
    rows: list[list[str]]
    caption: str | None = None


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def mb(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.1f} MB"


def ratio(new: float | int | None, base: float | int | None) -> str:
    """How many times ``new`` beats ``base`` (base / new), e.g. a speed-up or the memory saved."""
    if new is None or base is None or not new:
        return "n/a"
    return f"{base / new:.2f}x"


def times(new: float, base: float) -> str:
    """``new`` as a multiple of ``base``'s time."""
    return f"{new / base:.2f}x time"
