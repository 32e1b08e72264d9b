"""Reading one feature array from ``.npz`` / ``.npy`` and checking it, with errors that name the file; writing
an ``.npz`` atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from masra.data.atomic import atomic_file
from masra.errors import MasraError


def _unreadable(path: Path, kind: str, err: Exception) -> MasraError:
    return MasraError(f"cannot read {kind} (corrupt or not a numpy file): {type(err).__name__}: {err}", file=path)


# Decoding a damaged file can fail anywhere in zipfile, zlib, numpy's header parser or the allocator
# (BadZipFile, zlib.error, ValueError, tokenize errors, EOFError, MemoryError, ...): every failure while
# reading is reported as an unreadable file, so these readers catch Exception on purpose.


def read_npz_arrays(path: Path, keys: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The arrays ``keys`` (all required) and those of ``optional`` that exist, from one opening of an ``.npz``
    file, without pickles; a missing file, a missing key or any decoding failure is a MasraError naming the file."""
    if not path.is_file():
        raise MasraError("feature file not found", file=path)
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as err:
        raise _unreadable(path, "npz", err) from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise MasraError("expected an .npz archive, found a single array", file=path)
    arrays = {}
    with loaded as npz:
        for key in (*keys, *(k for k in optional if k in npz.files)):  # in order: the first problem is reported
            if key not in npz.files:
                raise MasraError(
                    f"missing key (keys in the file: {', '.join(npz.files) or 'none'})", file=path, field=key
                )
            try:
                arrays[key] = npz[key]
            except Exception as err:
                raise _unreadable(path, "npz", err) from None
    return arrays


def read_npz_array(path: Path, key: str) -> np.ndarray:
    """``np.load(path)[key]`` without pickles (see :func:`read_npz_arrays`)."""
    return read_npz_arrays(path, (key,))[key]


def write_npz_atomic(path: Path, **arrays: np.ndarray) -> None:
    """``np.savez`` (uncompressed) to ``path`` through :func:`masra.data.atomic.atomic_file`."""
    with atomic_file(path, binary=True) as handle:
        np.savez(handle, **arrays)


def read_npy(path: Path) -> np.ndarray:
    """``np.load(path)`` of a plain ``.npy`` file, without pickles; any decoding failure is a MasraError."""
    if not path.is_file():
        raise MasraError("feature file not found", file=path)
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as err:
        raise _unreadable(path, "npy", err) from None
    if not isinstance(array, np.ndarray):
        array.close()
        raise MasraError("expected a single array (.npy), found an archive", file=path)
    return array


def check_rows(
    array: np.ndarray,
    path: str | Path,
    *,
    field: str | None = None,
    allow_1d: bool = False,
    max_rows: int = -1,
) -> np.ndarray:
    """The first ``max_rows`` rows (all when -1) of a feature matrix [rows, D] as float32, after checking that
    it is real numeric, 2-D (or 1-D → one row when ``allow_1d``), non-empty and finite once cast to float32.

    The shape is checked before anything is indexed, and finiteness after the cast, so a float64 value
    beyond the float32 range is reported (file, row) instead of turning into inf.
    """
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise MasraError(f"expected a real numeric array, got dtype {array.dtype}", file=path, field=field)
    if array.ndim == 1 and allow_1d:
        array = array[None, :]
    if array.ndim != 2:
        raise MasraError(f"expected a 2-D array [rows, dim], got shape {tuple(array.shape)}", file=path, field=field)
    if max_rows >= 0:
        array = array[:max_rows]
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise MasraError(f"empty array of shape {tuple(array.shape)}", file=path, field=field)
    return finite_float32(array, path, field=field)


def finite_float32(array: np.ndarray, path: str | Path, *, field: str | None = None) -> np.ndarray:
    """A 2-D numeric ``array`` as float32, checked after the cast: NaN/inf in the file, or a finite value
    beyond the float32 range (float64 ``1e300``), is an error naming the file and the first bad row."""
    with np.errstate(over="ignore"):
        cast = array.astype(np.float32)
    finite = np.isfinite(cast)
    if not finite.all():
        bad_row = int(np.argwhere(~finite.all(axis=1))[0, 0])
        if np.isfinite(array[bad_row]).all():
            largest = float(np.abs(array[bad_row]).max())
            raise MasraError(f"value {largest:.3g} in row {bad_row} is beyond the float32 range", file=path,
                             field=field)
        raise MasraError(f"NaN or inf in row {bad_row}", file=path, field=field)
    return cast
