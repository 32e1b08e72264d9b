"""Atomic file writing: a temporary file beside the target, fsynced, then renamed over it, so a crash never
leaves a half-written file and a failed write leaves no temporary file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def atomic_file(path: str | Path, *, binary: bool = False) -> Iterator[IO]:
    """A handle on ``PATH.tmp`` (text UTF-8, or bytes when ``binary``) that replaces ``path`` (fsynced) when
    the block ends without an error; the parent folder is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with (tmp.open("wb") if binary else tmp.open("w", encoding="utf-8")) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)  # inside the try: a failed rename (e.g. onto a folder) leaves no temporary file
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
