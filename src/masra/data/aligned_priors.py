"""MLLM priors as training data: per-video ``{prior_dir}/{vid}.npz`` aligned to the video's clips.

File contract (docs/ARCHITECTURE.md): ``clip_caption_emb`` [L, Ds] float32, optional ``clip_caption_valid``
[L] bool (missing = rows with a non-zero norm are valid), ``event_emb`` [M, Ds], ``event_spans`` [M, 2]
seconds; M may be 0.

Alignment to a video of ``n_clips`` clips (after the same max_v_l truncation as its features): captions are
truncated to ``n_clips`` (or padded with invalid rows); the caption count may differ from the clip count by
at most ``length_tolerance`` (same rule as between feature sources) before it is an error. Event spans
become inclusive clip spans ``[floor(s / cl), min(ceil(e / cl), L) - 1]``, at least one clip long; events
that start at or after clip L are dropped and counted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from masra.data.arrays import finite_float32, read_npz_array, read_npz_arrays
from masra.data.features import length_tolerance
from masra.data.paths import child_path
from masra.errors import MasraError

logger = logging.getLogger(__name__)

CAPTION_KEY = "clip_caption_emb"
VALID_KEY = "clip_caption_valid"
EVENT_KEY = "event_emb"
SPAN_KEY = "event_spans"


@dataclass
class AlignedPriors:
    caption_emb: np.ndarray  # [L, Ds] float32
    caption_valid: np.ndarray  # [L] bool
    event_emb: np.ndarray  # [M, Ds] float32
    event_spans: np.ndarray  # [M, 2] int64, inclusive clip indices
    dropped_events: int  # events that started beyond the video's last clip


def event_clip_spans(spans_s: np.ndarray, clip_length: float, n_clips: int) -> tuple[np.ndarray, np.ndarray]:
    """Seconds [M, 2] -> (inclusive clip spans [K, 2] int64, kept mask [M] bool) for a video of n_clips."""
    first = np.floor(spans_s[:, 0] / clip_length).astype(np.int64)
    last = np.minimum(np.ceil(spans_s[:, 1] / clip_length).astype(np.int64), n_clips) - 1
    last = np.maximum(last, first)  # at least one clip
    kept = first < n_clips
    return np.stack([first[kept], last[kept]], axis=1).reshape(-1, 2), kept


class PriorLoader:
    """Reads and aligns prior files of one folder; checks that the embedding dimension is the same everywhere."""

    def __init__(self, prior_dir: str | Path, clip_length: float) -> None:
        self.folder = Path(prior_dir)
        if not self.folder.is_dir():
            raise MasraError("prior folder not found", file=self.folder, field="data.prior_dir")
        self.clip_length = clip_length
        self.dim: int | None = None

    def path(self, vid: str) -> Path:
        return child_path(self.folder, vid, ".npz")

    def has(self, vid: str) -> bool:
        return self.path(vid).is_file()

    def coverage(self, vids: list[str]) -> float:
        """Fraction of distinct vids that have a prior file; logs a warning when some are missing."""
        unique = sorted(set(vids))
        if not unique:
            return 0.0
        with_priors = sum(self.has(v) for v in unique)
        fraction = with_priors / len(unique)
        if with_priors < len(unique):
            logger.warning(
                "priors cover %d of %d videos (%.1f%%) in %s; the others train without prior losses",
                with_priors, len(unique), 100 * fraction, self.folder,
            )
        return fraction

    def _check_dim(self, array: np.ndarray, path: Path, key: str) -> None:
        if self.dim is None:
            self.dim = array.shape[1]
        elif array.shape[1] != self.dim:
            raise MasraError(f"embedding dim {array.shape[1]} differs from {self.dim} of earlier prior files", file=path, field=key)

    @staticmethod
    def _matrix(arrays: dict[str, np.ndarray], path: Path, key: str, cols: int | None = None) -> np.ndarray:
        array = arrays[key]
        if array.ndim != 2 or (cols is not None and array.shape[1] != cols):
            want = f"[n, {cols}]" if cols is not None else "[n, dim]"
            raise MasraError(f"expected shape {want}, got {tuple(array.shape)}", file=path, field=key)
        if not np.issubdtype(array.dtype, np.number):
            raise MasraError(f"expected numbers, got dtype {array.dtype}", file=path, field=key)
        return finite_float32(array, path, field=key)

    def load(self, vid: str, n_clips: int) -> AlignedPriors | None:
        """The priors of ``vid`` aligned to ``n_clips`` clips, or None when the video has no prior file."""
        path = self.path(vid)
        if not path.is_file():
            return None
        arrays = read_npz_arrays(path, (CAPTION_KEY, EVENT_KEY, SPAN_KEY), optional=(VALID_KEY,))  # one opening
        captions = self._matrix(arrays, path, CAPTION_KEY)
        if abs(captions.shape[0] - n_clips) > length_tolerance(max(captions.shape[0], n_clips)):
            raise MasraError(f"{captions.shape[0]} caption rows for a video of {n_clips} clips", file=path, field=CAPTION_KEY)
        self._check_dim(captions, path, CAPTION_KEY)
        if VALID_KEY in arrays:
            valid = arrays[VALID_KEY]
            if valid.shape != (captions.shape[0],):
                raise MasraError(f"shape {valid.shape} does not match {captions.shape[0]} caption rows", file=path, field=VALID_KEY)
            valid = valid.astype(bool)
        else:
            valid = np.linalg.norm(captions, axis=1) > 0
        n_keep = min(captions.shape[0], n_clips)
        caption_emb = np.zeros((n_clips, captions.shape[1]), dtype=np.float32)
        caption_emb[:n_keep] = captions[:n_keep]
        caption_valid = np.zeros(n_clips, dtype=bool)
        caption_valid[:n_keep] = valid[:n_keep]

        events = self._matrix(arrays, path, EVENT_KEY)
        spans_s = self._matrix(arrays, path, SPAN_KEY, cols=2)
        if events.shape[0] != spans_s.shape[0]:
            raise MasraError(f"{spans_s.shape[0]} spans for {events.shape[0]} event embeddings", file=path, field=SPAN_KEY)
        if events.shape[0]:
            self._check_dim(events, path, EVENT_KEY)
        bad = np.flatnonzero((spans_s[:, 0] < 0) | (spans_s[:, 0] > spans_s[:, 1]))
        if bad.size:
            st, ed = spans_s[bad[0]]
            raise MasraError(f"event {bad[0]}: span [{st:g}, {ed:g}] is negative or reversed", file=path, field=SPAN_KEY)
        clip_spans, kept = event_clip_spans(spans_s, self.clip_length, n_clips)
        return AlignedPriors(
            caption_emb=caption_emb,
            caption_valid=caption_valid,
            event_emb=events[kept],
            event_spans=clip_spans,
            dropped_events=int((~kept).sum()),
        )


def prior_dim(prior_dir: str | Path) -> int | None:
    """Ds of the first prior file in ``prior_dir`` (None when the folder has none)."""
    for path in sorted(Path(prior_dir).glob("*.npz")):
        captions = read_npz_array(path, CAPTION_KEY)
        if captions.ndim == 2:
            return int(captions.shape[1])
        raise MasraError(f"expected shape [n, dim], got {tuple(captions.shape)}", file=path, field=CAPTION_KEY)
    return None

