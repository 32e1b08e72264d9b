"""Reading one feature array from ``.npz`` / ``.npy`` and checking it, with errors that name the file."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from masra.errors import MasraError


def read_npz_array(path: Path, key: str) -> np.ndarray:
    """``np.load(path)[key]`` without pickles; a missing file, key or a corrupt archive is a MasraError."""
    if not path.is_file():
        raise MasraError("feature file not found", file=path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            if key not in npz.files:
                raise MasraError(f"missing key (keys in the file: {', '.join(npz.files) or 'none'})", file=path, field=key)
            return npz[key]
    except MasraError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise MasraError(f"cannot read npz: {err}", file=path) from None


def read_npy(path: Path) -> np.ndarray:
    """``np.load(path)`` of a plain ``.npy`` file, without pickles."""
    if not path.is_file():
        raise MasraError("feature file not found", file=path)
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise MasraError(f"cannot read npy: {err}", file=path) from None
    if not isinstance(array, np.ndarray):
        raise MasraError("expected a single array (.npy), found an archive", file=path)
    return array


def check_rows(array: np.ndarray, path: str | Path, *, field: str | None = None, allow_1d: bool = False) -> np.ndarray:
    """Check a feature matrix [rows, D]: numeric, 2-D (or 1-D → one row when ``allow_1d``), non-empty, finite."""
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise MasraError(f"expected a real numeric array, got dtype {array.dtype}", file=path, field=field)
    if array.ndim == 1 and allow_1d:
        array = array[None, :]
    if array.ndim != 2:
        raise MasraError(f"expected a 2-D array [rows, dim], got shape {tuple(array.shape)}", file=path, field=field)
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise MasraError(f"empty array of shape {tuple(array.shape)}", file=path, field=field)
    finite = np.isfinite(array)
    if not finite.all():
        bad_row = int(np.argwhere(~finite.all(axis=1))[0, 0])
        raise MasraError(f"NaN or inf in row {bad_row}", file=path, field=field)
    return array
