"""File names built from data (vids, qids) must stay inside their folder; outputs are never overwritten silently."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from masra.errors import MasraError


def unsafe_name(name: str) -> str | None:
    """Why ``name`` cannot be a file name inside a folder, or None when it can."""
    if name in ("", ".", "..") or any(c in name for c in "/\\\x00") or Path(name).is_absolute():
        return "it would leave the folder"
    return None


def qid_clash(qid: Any, line: int, seen: dict[str, tuple[Any, int]]) -> str | None:
    """Why ``qid`` (of ``line``) clashes with one seen earlier, or None; records it in ``seen``.

    Feature and prediction files are named after ``str(qid)``, so the integer 9769 and the string "9769"
    clash as much as two equal qids do. Values that are neither int nor str are left to the type checks.
    """
    if isinstance(qid, bool) or not isinstance(qid, (int, str)):
        return None
    key = str(qid)
    if key not in seen:
        seen[key] = (qid, line)
        return None
    first, first_line = seen[key]
    if type(first) is type(qid):
        return f"duplicate qid {qid!r} (first on line {first_line})"
    return f"qid {qid!r} and qid {first!r} on line {first_line} name the same files (e.g. qid{key}.npz); use one spelling"


def child_path(folder: str | Path, name: str, suffix: str = "") -> Path:
    """``folder / (name + suffix)``, refusing any ``name`` that could leave ``folder``.

    Refused: empty names, '.', '..', names with a path separator or NUL, and absolute paths.
    """
    folder = Path(folder)
    reason = unsafe_name(name)
    if reason is not None:
        raise MasraError(f"refusing file name {name!r}: {reason}", file=folder)
    path = folder / f"{name}{suffix}"
    if path.resolve().parent != folder.resolve():
        raise MasraError(f"refusing file name {name!r}: it resolves outside the folder", file=folder)
    return path


def refuse_existing(path: str | Path | None, force: bool) -> None:
    """Refuse an output ``path`` that exists unless ``force`` (the ``--force`` of the commands); ``force``
    replaces a file only, never a folder or anything else masra does not write."""
    if path is not None and Path(path).exists() and not Path(path).is_file():
        raise MasraError("exists and is not a file; masra replaces only files", file=path)
    if path is not None and Path(path).exists() and not force:
        raise MasraError("output exists; pass --force to overwrite it", file=path)
