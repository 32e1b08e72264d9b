"""Video and query features in the anchors' layout (docs/data.md, "Feature folders"), from npz folders or packed stores.

Video: for each folder of ``DataConfig.v_feat_dirs`` (in order) read ``{vid}.npz`` key ``features``
(fallbacks: ``{vid}.npy``, then TVSum's ``{vid}_rgb.npy`` + ``{vid}_opt.npy`` concatenated), truncate to
``max_v_l`` rows, cast to float32, L2-normalise each row as ``x / (||x|| + 1e-5)``; trim all sources to the
shortest, concatenate along D, append the TEF ``[i/L, (i+1)/L]`` last (not normalised).
Text: ``{t_feat_dir}/{t_feat_prefix}{qid}.npz`` key ``t_feat_key`` truncated to ``max_q_l`` and normalised.
A folder holding a ``manifest.json`` is read as a packed store (``masra.data.store``) with the same keys.

Length rule: sources of one video may differ by a few rows (the anchors trim silently). We trim to the
shortest too, but a difference larger than ``length_tolerance(longest)`` = max(2 rows, 5 % of the longest
source) means the files do not belong together and is an error.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from masra.data.arrays import check_rows, read_npy, read_npz_array
from masra.data.paths import child_path
from masra.data.store import FeatureStore, is_store
from masra.errors import MasraError

if TYPE_CHECKING:  # masra.config imports torch (the parts' registry); the array helpers here do not need it
    from masra.config import DataConfig

NORM_EPS = 1e-5
LENGTH_TOLERANCE_ROWS = 2
LENGTH_TOLERANCE_FRACTION = 0.05
TEF_DIM = 2


def length_tolerance(longest: int) -> int:
    """How many rows the sources of one video may differ by before it is an error."""
    return max(LENGTH_TOLERANCE_ROWS, math.ceil(LENGTH_TOLERANCE_FRACTION * longest))


def l2_normalize_rows(x: np.ndarray) -> np.ndarray:
    """Row-wise ``x / (||x||_2 + 1e-5)`` (the anchors' offline normalisation).

    Rows whose squared norm overflows ``x``'s dtype (values near the float32 maximum) are normalised in
    float64 instead of being divided by inf (which would zero them); all other rows keep the anchors' exact
    arithmetic.
    """
    with np.errstate(over="ignore"):  # an overflowing row is handled below
        norm = np.linalg.norm(x, axis=-1, keepdims=True)
    out = x / (norm + NORM_EPS)
    overflow = np.isinf(norm[..., 0])
    if overflow.any():
        wide = x[overflow].astype(np.float64)
        out[overflow] = wide / (np.linalg.norm(wide, axis=-1, keepdims=True) + NORM_EPS)
    return out


def temporal_endpoint_feature(n_clips: int) -> np.ndarray:
    """TEF [n_clips, 2] float32: clip i gets [i / L, (i + 1) / L]."""
    start = np.arange(n_clips, dtype=np.float32) / n_clips
    return np.stack([start, start + 1.0 / n_clips], axis=1)


class FeatureSource:
    """One feature folder: either per-item ``.npz``/``.npy`` files or a packed store (auto-detected)."""

    def __init__(self, folder: str | Path, key: str) -> None:
        self.folder = Path(folder)
        self.key = key
        if not self.folder.is_dir():
            raise MasraError("feature folder not found", file=self.folder)
        self.store = FeatureStore(self.folder) if is_store(self.folder) else None

    def read(self, name: str, *, npy_fallback: bool = True) -> tuple[np.ndarray, str] | None:
        """(array, location for errors) of item ``name``, or None when the folder has no such item."""
        if self.store is not None:
            child_path(self.folder, name)  # same name rules as for files
            array = self.store.get(name)
            return None if array is None else (array, self.store.location(name))
        npz = child_path(self.folder, name, ".npz")
        if npz.is_file():
            return read_npz_array(npz, self.key), str(npz)
        npy = child_path(self.folder, name, ".npy")
        if npy_fallback and npy.is_file():
            return read_npy(npy), str(npy)
        return None


class FeatureLoader:
    """Loads the model inputs of one sample (video matrix with TEF, query token matrix) as float32 numpy.

    ``video_dim`` (TEF included) / ``text_dim``: the input dims of the model that will read the features, when
    one exists (inference: the checkpoint's ``ModelDims``); features of another dim are an error. Without them
    every file must have the dims of the first one read.
    """

    def __init__(self, cfg: DataConfig, *, video_dim: int | None = None, text_dim: int | None = None) -> None:
        self.cfg = cfg
        self.video_dim = video_dim
        if not cfg.v_feat_dirs and not cfg.use_tef:
            raise MasraError("no video input: set data.v_feat_dirs or enable data.use_tef", field="data.v_feat_dirs")
        if not cfg.v_feat_dirs and cfg.max_v_l < 0:
            raise MasraError("TEF-only input needs a clip count: set data.max_v_l", field="data.max_v_l")
        self.video_sources = [FeatureSource(d, "features") for d in cfg.v_feat_dirs]
        self.text_source = FeatureSource(cfg.t_feat_dir, cfg.t_feat_key) if cfg.t_feat_dir else None
        self._source_dims: list[int | None] = [None] * len(self.video_sources)
        self._text_dim: int | None = text_dim

    def _read_video_source(self, index: int, vid: str) -> np.ndarray:
        source = self.video_sources[index]
        found = source.read(vid)
        if found is not None:
            array, where = found
            array = check_rows(array, where, field="features", max_rows=self.cfg.max_v_l)
        else:
            rgb, opt = source.read(f"{vid}_rgb"), source.read(f"{vid}_opt")
            if rgb is None or opt is None:
                raise MasraError(
                    f"no video features for vid {vid!r} (looked for {vid}.npz, {vid}.npy, {vid}_rgb.npy + {vid}_opt.npy)",
                    file=source.folder,
                )
            parts = [check_rows(a, w, max_rows=self.cfg.max_v_l) for a, w in (rgb, opt)]
            n = min(p.shape[0] for p in parts)
            array, where = np.concatenate([p[:n] for p in parts], axis=1), f"{rgb[1]} + {opt[1]}"
        expected = self._source_dims[index]
        if expected is None:
            self._source_dims[index] = array.shape[1]
        elif array.shape[1] != expected:
            raise MasraError(f"dim {array.shape[1]} differs from {expected} of earlier files in this folder", file=where)
        return l2_normalize_rows(array) if self.cfg.normalize_video else array

    def video(self, vid: str) -> np.ndarray:
        """[L, Dv] float32: normalised sources concatenated in config order, TEF last when enabled."""
        parts = [self._read_video_source(i, vid) for i in range(len(self.video_sources))]
        if parts:
            lengths = [p.shape[0] for p in parts]
            if max(lengths) - min(lengths) > length_tolerance(max(lengths)):
                detail = ", ".join(f"{s.folder}: {n}" for s, n in zip(self.video_sources, lengths))
                raise MasraError(f"feature sources of vid {vid!r} differ in length ({detail})", file=self.video_sources[0].folder)
            n_clips = min(lengths)
            video = np.concatenate([p[:n_clips] for p in parts], axis=1)
        else:  # TEF-only input (ctx_mode "tef" in the anchors): the clip count comes from max_v_l
            n_clips = self.cfg.max_v_l
            video = np.zeros((n_clips, 0), dtype=np.float32)
        if self.cfg.use_tef:
            video = np.concatenate([video, temporal_endpoint_feature(n_clips)], axis=1)
        if self.video_dim is not None and video.shape[1] != self.video_dim:
            raise MasraError(
                f"video features of vid {vid!r} have dim {video.shape[1]} (TEF included); the model takes {self.video_dim}",
                field="data.v_feat_dirs",
            )
        return video

    def text(self, qid: int | str) -> np.ndarray:
        """[N, Dt] float32 query token features, truncated to max_q_l and normalised when enabled."""
        if self.text_source is None:
            raise MasraError("no text features configured", field="data.t_feat_dir")
        name = f"{self.cfg.t_feat_prefix}{qid}"
        found = self.text_source.read(name, npy_fallback=False)
        if found is None:
            raise MasraError(f"no text features for qid {qid!r}", file=child_path(self.text_source.folder, name, ".npz"))
        array, where = found
        array = check_rows(array, where, field=self.cfg.t_feat_key, allow_1d=True, max_rows=self.cfg.max_q_l)
        if self._text_dim is None:
            self._text_dim = array.shape[1]
        elif array.shape[1] != self._text_dim:
            raise MasraError(f"dim {array.shape[1]} differs from the expected text dim {self._text_dim}", file=where)
        return l2_normalize_rows(array) if self.cfg.normalize_text else array
