"""File names built from data (vids, qids) must stay inside their folder."""

from __future__ import annotations

from pathlib import Path

from masra.errors import MasraError


def unsafe_name(name: str) -> str | None:
    """Why ``name`` cannot be a file name inside a folder, or None when it can."""
    if name in ("", ".", "..") or any(c in name for c in "/\\\x00") or Path(name).is_absolute():
        return "it would leave the folder"
    return None


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
