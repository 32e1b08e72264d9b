"""The tensor API: :class:`Grounder` runs a trained model on features the caller provides (and, through
:mod:`masra.inference.video`, on video files)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from masra.checkpoint import ModelDims
from masra.config import Config
from masra.data.batch import GroundingBatch, pad_sequences
from masra.errors import MasraError
from masra.inference.loading import load_model

if TYPE_CHECKING:  # the video side (masra.features, masra.video) is imported only where it is used
    from masra.features.encoder import ClipEncoder
    from masra.features.video import Progress, VideoFeatures
    from masra.video.predict import VideoPrediction

logger = logging.getLogger("masra.inference")

ArrayLike = np.ndarray | torch.Tensor


@dataclass
class Prediction:
    windows: list[tuple[float, float, float]]  # (start_s, end_s, score), best first, dataset post-processing applied
    saliency: np.ndarray  # [L] float32 per-clip saliency (highlight) scores


def _as_array(value: ArrayLike, name: str, ndim: int = 2) -> np.ndarray:
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if array.ndim != ndim:
        raise MasraError(f"expected a {ndim}-d array, got shape {tuple(array.shape)}", field=name)
    if not np.isfinite(array).all():
        raise MasraError("contains NaN or inf", field=name)
    return array.astype(np.float32)


class Grounder:
    """Moment retrieval + highlight detection with a trained model, on features the caller provides."""

    def __init__(self, model: torch.nn.Module, cfg: Config, dims: ModelDims, device: str | torch.device = "cpu"):
        self.model = model.eval()
        self.cfg = cfg
        self.dims = dims
        self.device = torch.device(device)
        self.checkpoint = "this model"
        # Where the video/query encoder is loaded from (None: the recorded one); loaded on first use.
        self.encoder_spec: str | None = dims.feature_encoder
        self._encoder: Any = None

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str | torch.device | None = None, video_encoder: str | None = None
    ) -> "Grounder":
        """Load ``path`` (a checkpoint folder such as ``RUN/best``, or a run folder, which means ``RUN/last``).

        ``device`` None picks cuda when available. ``video_encoder`` ("clip:NAME_OR_LOCAL_PATH") says where
        to load the encoder for :meth:`extract_video` / :meth:`predict_video` from; default: the encoder the
        checkpoint records. A different model than the recorded one is refused when it is loaded.
        """
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model, cfg, dims = load_model(path, device)
        grounder = cls(model, cfg, dims, device)
        grounder.checkpoint = str(path)
        if video_encoder is not None:
            from masra.features.encoder import EncoderSpec

            grounder.encoder_spec = str(EncoderSpec.parse(video_encoder))
        return grounder

    @property
    def clip_length(self) -> float:
        return self.cfg.data.clip_length

    def prepare_video(self, video_feats: ArrayLike) -> np.ndarray:
        """[L, D] raw features → the model input [L', v_feat_dim]: truncated to max_v_l, each source
        L2-normalised as in training, TEF appended. Input that already has the full width (TEF included) is
        used as it is."""
        from masra.data.features import l2_normalize_rows, temporal_endpoint_feature

        video = _as_array(video_feats, "video_feats")
        data = self.cfg.data
        tef = 2 if data.use_tef else 0
        if data.max_v_l > 0 and video.shape[0] > data.max_v_l:
            logger.warning("video has %d clips; the model was trained on at most %d, the rest is dropped",
                           video.shape[0], data.max_v_l)
            video = video[: data.max_v_l]
        if video.shape[0] == 0:
            raise MasraError("video has no clips", field="video_feats")
        if tef and video.shape[1] == self.dims.v_feat_dim:
            return video
        raw_dim = self.dims.v_feat_dim - tef
        if video.shape[1] != raw_dim:
            raise MasraError(f"video feature dim {video.shape[1]}; this model expects {raw_dim} (or "
                             f"{self.dims.v_feat_dim} with TEF)", field="video_feats")
        if data.normalize_video:
            bounds = np.cumsum([0, *(self.dims.v_source_dims or [raw_dim])])
            video = np.concatenate([l2_normalize_rows(video[:, a:b]) for a, b in zip(bounds[:-1], bounds[1:])], 1)
        if tef:
            video = np.concatenate([video, temporal_endpoint_feature(video.shape[0])], axis=1)
        return video.astype(np.float32)

    def prepare_query(self, query_feats: ArrayLike) -> np.ndarray:
        """[N, Dt] token features → truncated to max_q_l and L2-normalised as in training."""
        from masra.data.features import l2_normalize_rows

        query = _as_array(query_feats, "query_feats")
        if query.shape[1] != self.dims.t_feat_dim:
            raise MasraError(f"query feature dim {query.shape[1]}; this model expects {self.dims.t_feat_dim}",
                             field="query_feats")
        if self.cfg.data.max_q_l > 0:
            query = query[: self.cfg.data.max_q_l]
        if query.shape[0] == 0:
            raise MasraError("query has no tokens", field="query_feats")
        return l2_normalize_rows(query).astype(np.float32) if self.cfg.data.normalize_text else query

    def predict(
        self, video_feats: ArrayLike, query_feats: ArrayLike, duration: float | None = None, top_k: int = 10
    ) -> Prediction:
        """Moments and per-clip saliency for one (video, query) pair; ``duration`` defaults to clips × clip_length."""
        return self.predict_batch([video_feats], [query_feats], [duration], top_k=top_k)[0]

    def predict_batch(
        self,
        videos: Sequence[ArrayLike],
        queries: Sequence[ArrayLike],
        durations: Sequence[float | None] | None = None,
        top_k: int = 10,
    ) -> list[Prediction]:
        """:meth:`predict` for many pairs in one forward pass (padded like the training collate)."""
        from masra.model.postprocess import query_windows

        if len(videos) != len(queries):
            raise MasraError(f"{len(videos)} videos but {len(queries)} queries", field="queries")
        durations = list(durations) if durations is not None else [None] * len(videos)
        if len(durations) != len(videos):
            raise MasraError(f"{len(videos)} videos but {len(durations)} durations", field="durations")
        if not videos:
            return []
        prepared_v = [self.prepare_video(v) for v in videos]
        prepared_q = [self.prepare_query(q) for q in queries]
        batch = _pad_batch(prepared_v, prepared_q)
        with torch.inference_mode():
            outputs = self.model(batch.to(self.device))
        logits = outputs["pred_logits"].float().cpu()  # [B, Q, 2]
        spans = outputs["pred_spans"].float().cpu()  # [B, Q, 2]
        saliency = outputs["saliency_scores"].float().cpu()  # [B, L]
        results = []
        for i, video in enumerate(prepared_v):
            n_clips = video.shape[0]
            duration = float(durations[i]) if durations[i] is not None else n_clips * self.clip_length
            rows = query_windows(logits[i], spans[i], duration, self.cfg.eval, self.clip_length)[:top_k]
            results.append(Prediction(windows=[(float(s), float(e), float(p)) for s, e, p in rows],
                                      saliency=saliency[i, :n_clips].numpy().copy()))
        return results

    # ----- from video files (masra.inference.video) --------------------------------------------------------
    @property
    def encoder(self) -> "ClipEncoder":
        """The video/query encoder, loaded on first use and checked against the checkpoint's record."""
        if self._encoder is None:
            from masra.inference.video import load_checked_encoder

            self._encoder = load_checked_encoder(self.encoder_spec, self.device, self.dims, self.cfg.data.use_tef,
                                                 where=self.checkpoint)
        return self._encoder

    def extract_video(self, path: str | Path, progress: Progress | None = None) -> VideoFeatures:
        """Clip features of a video file on this checkpoint's clip grid (reusable for many queries)."""
        from masra.features.video import extract_video

        return extract_video(self.encoder, path, self.clip_length, progress=progress)

    def encode_query(self, query: str) -> np.ndarray:
        """[N, Dt] token features of one query text."""
        if not isinstance(query, str) or not query.strip():
            raise MasraError("query is empty", field="query")
        return self.encoder.encode_queries([query.strip()])[0].last_hidden_state

    def predict_video(
        self,
        video: str | Path | VideoFeatures,
        query: str,
        progress: Progress | None = None,
        top_k: int | None = None,
    ) -> VideoPrediction:
        """Moments and per-clip saliency of ``query`` over a whole video (a path or :meth:`extract_video`'s
        result). Videos longer than the trained length are covered by sliding windows (masra.video.windows)."""
        from masra.features.video import VideoFeatures
        from masra.inference.video import ground_video

        query_feats = self.encode_query(query)
        if not isinstance(video, VideoFeatures):
            video = self.extract_video(video, progress=progress)
        return ground_video(self, video, query.strip(), query_feats, progress=progress, top_k=top_k)

def _pad_batch(videos: list[np.ndarray], queries: list[np.ndarray]) -> GroundingBatch:
    """Zero-padded inference batch with float masks (1 = valid), as the data collate builds it."""
    video, video_mask = pad_sequences([torch.from_numpy(v) for v in videos])
    query, query_mask = pad_sequences([torch.from_numpy(q) for q in queries])
    meta = [{"qid": i, "vid": str(i), "query": "", "duration": None} for i in range(len(videos))]
    return GroundingBatch(video_feats=video, video_mask=video_mask, query_feats=query, query_mask=query_mask, meta=meta)
