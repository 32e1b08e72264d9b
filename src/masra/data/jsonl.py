"""JSON and JSON Lines files: reading with errors that name the file and line, atomic writing.

Every JSON file the package writes goes through :func:`write_json` or :func:`write_jsonl`: a temporary file
beside the target, fsynced, then renamed over it, so a crash never leaves a half-written file.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from masra.errors import MasraError


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line_number, object) for every non-blank line; a bad line raises MasraError naming it."""
    path = Path(path)
    if not path.is_file():
        raise MasraError("file not found", file=path)
    with path.open("r", encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise MasraError(f"invalid JSON ({err.msg} at column {err.colno})", file=path, line=line_no) from None
            if not isinstance(obj, dict):
                raise MasraError(f"expected a JSON object, got {type(obj).__name__}", file=path, line=line_no)
            yield line_no, obj


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


@contextmanager
def atomic_text_file(path: str | Path) -> Iterator[TextIO]:
    """A text handle on ``PATH.tmp`` that replaces ``path`` (fsynced) when the block ends without an error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]], *, overwrite: bool = True) -> None:
    """Write rows atomically; a non-finite number is an error (the official format has none)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise MasraError("file exists (pass overwrite to replace it)", file=path)
    with atomic_text_file(path) as handle:
        for row in rows:
            handle.write(json.dumps(_finite_or_raise(row)) + "\n")


def write_json(path: str | Path, value: Any, *, indent: int | None = 2) -> None:
    """Write one JSON document atomically, with a final newline (``indent=4`` for the official metrics layout)."""
    with atomic_text_file(path) as handle:
        handle.write(json.dumps(value, indent=indent) + "\n")
