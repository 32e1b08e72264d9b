"""MLLM priors as training data: per-video ``{prior_dir}/{vid}.npz`` aligned to the video's clips.

The file format, its reading and its validation belong to :mod:`masra.data.prior_file`; this module aligns
a file's content to the clips of a video and checks that Ds is the same in every file of a folder.

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

from masra.data.features import length_tolerance
from masra.data.prior_file import CAPTION_KEY, prior_path, read_prior_dim, read_prior_file
from masra.errors import MasraError

logger = logging.getLogger(__name__)


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
        return prior_path(self.folder, vid)

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

    def _check_dim(self, dim: int, path: Path) -> None:
        """The file's own events share its caption dim (checked by the reader); here it must match the folder's."""
        if self.dim is None:
            self.dim = dim
        elif dim != self.dim:
            raise MasraError(f"embedding dim {dim} differs from {self.dim} of earlier prior files", file=path, field=CAPTION_KEY)

    def load(self, vid: str, n_clips: int) -> AlignedPriors | None:
        """The priors of ``vid`` aligned to ``n_clips`` clips, or None when the video has no prior file."""
        path = self.path(vid)
        if not path.is_file():
            return None
        prior = read_prior_file(path)
        captions = prior.caption_emb
        if abs(captions.shape[0] - n_clips) > length_tolerance(max(captions.shape[0], n_clips)):
            raise MasraError(f"{captions.shape[0]} caption rows for a video of {n_clips} clips", file=path, field=CAPTION_KEY)
        self._check_dim(prior.dim, path)
        n_keep = min(captions.shape[0], n_clips)
        caption_emb = np.zeros((n_clips, captions.shape[1]), dtype=np.float32)
        caption_emb[:n_keep] = captions[:n_keep]
        caption_valid = np.zeros(n_clips, dtype=bool)
        caption_valid[:n_keep] = prior.caption_valid[:n_keep]
        clip_spans, kept = event_clip_spans(prior.event_spans, self.clip_length, n_clips)
        return AlignedPriors(
            caption_emb=caption_emb,
            caption_valid=caption_valid,
            event_emb=prior.event_emb[kept],
            event_spans=clip_spans,
            dropped_events=int((~kept).sum()),
        )


def prior_dim(prior_dir: str | Path) -> int | None:
    """Ds of the first prior file in ``prior_dir`` (None when the folder has none)."""
    first = next(iter(sorted(Path(prior_dir).glob("*.npz"))), None)
    return None if first is None else read_prior_dim(first)
