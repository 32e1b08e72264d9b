"""File names built from data (vids, qids) must stay inside their folder."""

from __future__ import annotations

from pathlib import Path

from masra.errors import MasraError


def child_path(folder: str | Path, name: str, suffix: str = "") -> Path:
    """``folder / (name + suffix)``, refusing any ``name`` that could leave ``folder``.

    Refused: empty names, '.', '..', names with a path separator or NUL, and absolute paths.
    """
    folder = Path(folder)
    if (
        not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\x00" in name
        or Path(name).is_absolute()
    ):
        raise MasraError(f"refusing file name {name!r}: it would leave the folder", file=folder)
    path = folder / f"{name}{suffix}"
    if path.resolve().parent != folder.resolve():
        raise MasraError(f"refusing file name {name!r}: it resolves outside the folder", file=folder)
    return path
