"""Another code base's options (a checkpoint's ``opt``), read with their types and ranges checked: a crafted
checkpoint's value is refused with the option's name before anything is built from it."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from masra.errors import MasraError

_REQUIRED = object()


class OptReader:
    """Typed access to ``opt`` (a dict of one checkpoint at ``path``); every error names ``opt.NAME``."""

    def __init__(self, opt: dict[str, Any], path: Path) -> None:
        self.opt = opt
        self.path = path

    def integer(self, name: str, low: int, high: int, default: Any = _REQUIRED, also: Iterable[int] = ()) -> int:
        """An int (not a bool) in [low, high], or one of ``also`` (e.g. -1 for "no limit")."""
        value = self._get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._error(name, f"{value!r} is not an integer")
        if not (low <= value <= high or value in also):
            extra = "".join(f" or {v}" for v in also)
            raise self._error(name, f"{value!r} is out of range ({low} to {high}{extra})")
        return value

    def number(self, name: str, low: float, high: float, default: Any = _REQUIRED, *,
               below_high: bool = False) -> float:
        """A finite int or float in [low, high] (or [low, high) with ``below_high``)."""
        value = self._get(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._error(name, f"{value!r} is not a number")
        if not math.isfinite(value):
            raise self._error(name, f"{value!r} is not a finite number")
        if not low <= value <= high or (below_high and value == high):
            raise self._error(name, f"{value!r} is out of range ({low:g} to {high:g}{', exclusive' if below_high else ''})")
        return float(value)

    def flag(self, name: str, default: Any = _REQUIRED) -> bool:
        value = self._get(name, default)
        if not isinstance(value, bool):
            raise self._error(name, f"{value!r} is not true or false")
        return value

    def choice(self, name: str, choices: Iterable[str], default: Any = _REQUIRED) -> str:
        value = self._get(name, default)
        choices = list(choices)
        if not isinstance(value, str) or value not in choices:
            raise self._error(name, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def text(self, name: str, default: Any = _REQUIRED) -> str | None:
        value = self._get(name, default)
        if value is not None and not isinstance(value, str):
            raise self._error(name, f"{value!r} is not a string")
        return value

    def names(self, name: str) -> list[str]:
        """A list of folder names (``v_feat_dirs``); absent or None is an empty list."""
        value = self._get(name, None)
        if value is None:
            return []
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise self._error(name, f"{value!r} is not a list of folder names")
        return list(value)

    def _get(self, name: str, default: Any) -> Any:
        if name in self.opt:
            return self.opt[name]
        if default is _REQUIRED:
            raise self._error(name, "the checkpoint's opt has no such option")
        return default

    def _error(self, name: str, message: str) -> MasraError:
        return MasraError(message, file=self.path, field=f"opt.{name}")
