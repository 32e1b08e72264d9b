"""The per-video prior file ``{prior_dir}/{vid}.npz``: its keys, its writer and its validating reader.

Every module that writes or reads a prior file goes through here (``masra priors encode``, the training
dataset, ``masra priors check``, the demo's synthetic data). The file holds::

    clip_caption_emb    [L, Ds] float32, L2-normalised; a clip without caption has a zero row
    clip_caption_valid  [L]     bool, optional (missing = rows with a non-zero norm are valid)
    event_emb           [M, Ds] float32, L2-normalised (M may be 0)
    event_spans         [M, 2]  float32, (start, end) in seconds, 0 <= start <= end

Writers may store further arrays beside these (``masra priors encode`` keeps a content hash to resume);
readers ignore them. Files are read without pickles, and a vid is only turned into a path inside its folder
(:func:`prior_path`). Every problem of a file is a MasraError naming the file and the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from masra.data.arrays import finite_float32, read_npz_array, read_npz_arrays, write_npz_atomic
from masra.data.paths import child_path
from masra.errors import MasraError

CAPTION_KEY = "clip_caption_emb"
VALID_KEY = "clip_caption_valid"
EVENT_KEY = "event_emb"
SPAN_KEY = "event_spans"


@dataclass(frozen=True)
class PriorFile:
    """The validated content of one prior file."""

    caption_emb: np.ndarray  # [L, Ds] float32
    caption_valid: np.ndarray  # [L] bool (from the file, or rows with a non-zero norm)
    event_emb: np.ndarray  # [M, Ds] float32 (M may be 0; then Ds is whatever the file holds)
    event_spans: np.ndarray  # [M, 2] float32 seconds

    @property
    def dim(self) -> int:
        return int(self.caption_emb.shape[1])


def prior_path(folder: str | Path, vid: str) -> Path:
    """``folder/{vid}.npz``, refusing a vid that would leave ``folder``."""
    return child_path(folder, vid, ".npz")


def _matrix(arrays: Mapping[str, np.ndarray], path: Path, key: str, cols: int | None = None) -> np.ndarray:
    """``arrays[key]`` as a finite float32 [n, cols] (any number of columns when ``cols`` is None)."""
    array = np.asarray(arrays[key])
    if array.ndim != 2 or (cols is not None and array.shape[1] != cols):
        want = f"[n, {cols}]" if cols is not None else "[n, dim]"
        raise MasraError(f"expected shape {want}, got {tuple(array.shape)}", file=path, field=key)
    if not np.issubdtype(array.dtype, np.number):
        raise MasraError(f"expected numbers, got dtype {array.dtype}", file=path, field=key)
    return finite_float32(array, path, field=key)


def check_prior_arrays(arrays: Mapping[str, np.ndarray], path: str | Path) -> PriorFile:
    """Validate the arrays of one prior file (``path`` names it in errors) and return them as a PriorFile."""
    path = Path(path)
    for key in (CAPTION_KEY, EVENT_KEY, SPAN_KEY):
        if key not in arrays:
            raise MasraError("missing key", file=path, field=key)
    captions = _matrix(arrays, path, CAPTION_KEY)
    if VALID_KEY in arrays:
        valid = np.asarray(arrays[VALID_KEY])
        if valid.shape != (captions.shape[0],):
            raise MasraError(f"shape {valid.shape} does not match {captions.shape[0]} caption rows", file=path, field=VALID_KEY)
        if not (valid.dtype == bool or np.issubdtype(valid.dtype, np.integer)):
            raise MasraError(f"expected bool, got dtype {valid.dtype}", file=path, field=VALID_KEY)
        valid = valid.astype(bool)
    else:
        valid = np.linalg.norm(captions, axis=1) > 0
    events = _matrix(arrays, path, EVENT_KEY)
    spans = _matrix(arrays, path, SPAN_KEY, cols=2)
    if events.shape[0] != spans.shape[0]:
        raise MasraError(f"{spans.shape[0]} spans for {events.shape[0]} event embeddings", file=path, field=SPAN_KEY)
    if events.shape[0] and events.shape[1] != captions.shape[1]:
        raise MasraError(
            f"embedding dim {events.shape[1]} differs from {captions.shape[1]} of {CAPTION_KEY}", file=path, field=EVENT_KEY
        )
    bad = np.flatnonzero((spans[:, 0] < 0) | (spans[:, 0] > spans[:, 1]))
    if bad.size:
        st, ed = spans[bad[0]]
        raise MasraError(f"event {bad[0]}: span [{st:g}, {ed:g}] is negative or reversed", file=path, field=SPAN_KEY)
    return PriorFile(caption_emb=captions, caption_valid=valid, event_emb=events, event_spans=spans)


def read_prior_file(path: str | Path) -> PriorFile:
    """The validated content of the prior file at ``path`` (one opening of the file)."""
    path = Path(path)
    arrays = read_npz_arrays(path, (CAPTION_KEY, EVENT_KEY, SPAN_KEY), optional=(VALID_KEY,))
    return check_prior_arrays(arrays, path)


def read_prior_dim(path: str | Path) -> int:
    """Ds of the prior file at ``path``, from its caption array alone."""
    path = Path(path)
    captions = read_npz_array(path, CAPTION_KEY)
    if captions.ndim != 2:
        raise MasraError(f"expected shape [n, dim], got {tuple(captions.shape)}", file=path, field=CAPTION_KEY)
    return int(captions.shape[1])


def write_prior_file(
    path: str | Path,
    *,
    caption_emb: np.ndarray,
    event_emb: np.ndarray,
    event_spans: np.ndarray,
    caption_valid: np.ndarray | None = None,
    extra: Mapping[str, np.ndarray] | None = None,
) -> None:
    """Write one prior file atomically, after checking its arrays as a reader would (an invalid file is never
    written). The arrays are stored as given; ``extra`` arrays are stored after them under their own keys."""
    path = Path(path)
    arrays = {CAPTION_KEY: caption_emb}
    if caption_valid is not None:
        arrays[VALID_KEY] = caption_valid
    arrays.update({EVENT_KEY: event_emb, SPAN_KEY: event_spans})
    check_prior_arrays(arrays, path)
    write_npz_atomic(path, **arrays, **(extra or {}))
