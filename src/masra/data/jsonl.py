"""JSON and JSON Lines files: defensive reading with errors that name the file, line and (where known)
field; atomic writing.

Reading: a line that is not UTF-8, not JSON, nested deeper than the parser can follow, holds an integer beyond
the float range, or is not an object becomes a MasraError naming file and line, never a traceback. Integers
beyond the float range are refused when parsed, so no reader meets an OverflowError later.

Writing: every JSON file the package writes goes through :func:`write_json` or :func:`write_jsonl`, which
write atomically (:func:`masra.data.atomic.atomic_file`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from masra.data.atomic import atomic_file
from masra.errors import MasraError

# Integers with at most this many characters always fit a float (float max is about 1.8e308); longer ones
# are checked with float() first, which also keeps Python's 4300-digit int() limit from being reached.
_SAFE_INT_CHARS = 300
_LONG_DIGIT_RUN = re.compile(r"\d{%d}" % _SAFE_INT_CHARS)  # lines without one parse on json's fast path
_TOO_LARGE = object()  # stands for an integer beyond the float range while locating it


class _NumberTooLarge(ValueError):
    pass


def _beyond_float(digits: str) -> bool:
    return len(digits) > _SAFE_INT_CHARS and math.isinf(float(digits))


def _strict_int(digits: str) -> int:
    if _beyond_float(digits):
        raise _NumberTooLarge(digits)
    return int(digits)


def _placeholder_int(digits: str) -> int | object:
    return _TOO_LARGE if _beyond_float(digits) else int(digits)


def _locate_too_large(text: str) -> str | None:
    """The field path (such as ``relevant_windows[0][1]``) of the first too-large integer of a JSON text."""
    try:
        obj = json.loads(text, parse_int=_placeholder_int)
    except RecursionError:
        return None
    stack: list[tuple[str, Any]] = [("", obj)]
    while stack:
        where, value = stack.pop()
        if value is _TOO_LARGE:
            return where or None
        if isinstance(value, dict):
            prefix = f"{where}." if where else ""
            stack.extend((f"{prefix}{k}", v) for k, v in reversed(list(value.items())))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", v) for i, v in reversed(list(enumerate(value))))
    return None


def parse_json_line(raw: bytes, path: str | Path, line_no: int) -> dict[str, Any]:
    """One line of a JSONL file as a JSON object; every problem is a MasraError naming file and line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise MasraError(
            f"not UTF-8 text (byte 0x{raw[err.start]:02x} at column {err.start + 1}); is this a JSONL file?",
            file=path, line=line_no,
        ) from None
    try:
        obj = json.loads(text, parse_int=_strict_int) if _LONG_DIGIT_RUN.search(text) else json.loads(text)
    except json.JSONDecodeError as err:
        raise MasraError(f"invalid JSON ({err.msg} at column {err.colno})", file=path, line=line_no) from None
    except _NumberTooLarge as err:
        digits, field = str(err), _locate_too_large(text)
        shown = f"{digits[:12]}… ({len(digits.lstrip('-'))} digits)"
        raise MasraError(f"number {shown} is too large for a float", file=path, line=line_no, field=field) from None
    except RecursionError:
        raise MasraError("JSON nested too deeply to read", file=path, line=line_no) from None
    if not isinstance(obj, dict):
        raise MasraError(f"expected a JSON object, got {type(obj).__name__}", file=path, line=line_no)
    return obj


def iter_jsonl_rows(path: str | Path) -> Iterator[tuple[int, dict[str, Any] | MasraError]]:
    """Yield (line_number, object or the MasraError of that line) for every non-blank line, so a checker
    can report every bad line and keep going."""
    path = Path(path)
    if not path.is_file():
        raise MasraError("file not found", file=path)
    with path.open("rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                yield line_no, parse_json_line(raw, path, line_no)
            except MasraError as err:
                yield line_no, err


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line_number, object) for every non-blank line; a bad line raises MasraError naming it."""
    for line_no, row in iter_jsonl_rows(path):
        if isinstance(row, MasraError):
            raise row
        yield line_no, row


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """All objects of a JSONL file, in file order."""
    return [obj for _, obj in iter_jsonl(path)]


def _finite_or_raise(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"non-finite number {obj}")
    if isinstance(obj, dict):
        for v in obj.values():
            _finite_or_raise(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _finite_or_raise(v)
    return obj


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]], *, overwrite: bool = True) -> None:
    """Write rows atomically; a non-finite number is an error (the official format has none)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise MasraError("file exists (pass overwrite to replace it)", file=path)
    with atomic_file(path) as handle:
        for row in rows:
            handle.write(json.dumps(_finite_or_raise(row)) + "\n")


def write_json(path: str | Path, value: Any, *, indent: int | None = 2) -> None:
    """Write one JSON document atomically, with a final newline (``indent=4`` for the official metrics layout)."""
    with atomic_file(path) as handle:
        handle.write(json.dumps(value, indent=indent) + "\n")
