""":class:`OnnxGrounder`: an export folder on onnxruntime, the torch-free twin of masra.inference.Grounder's
feature API (the same preparation, padding and post-processing code: masra.model.feature_inference)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from masra.model.feature_inference import (
    Prediction,
    as_features,
    predict_pairs,
    predict_sliding,
    prepare_query,
    prepare_video,
)
from masra.runtime.bundle import INPUT_NAMES, OUTPUT_NAMES, ExportInfo, read_export
from masra.runtime.session import open_session


class OnnxGrounder:
    """Moment retrieval + highlight detection with an exported model, on features the caller provides."""

    def __init__(self, session: Any, info: ExportInfo) -> None:
        self.session = session
        self.info = info
        self.inputs = info.inputs

    @classmethod
    def from_export(cls, folder: str | Path, threads: int | None = None) -> "OnnxGrounder":
        """Load the export folder ``folder`` (``masra export --out``); ``threads``: onnxruntime's intra-op threads."""
        model, info = read_export(folder)
        return cls(open_session(model, threads), info)

    @property
    def clip_length(self) -> float:
        return self.inputs.clip_length

    def prepare_video(self, video_feats: Any) -> np.ndarray:
        """[L, D] raw features → the model input (masra.model.feature_inference.prepare_video)."""
        return prepare_video(self.inputs, video_feats)

    def prepare_query(self, query_feats: Any) -> np.ndarray:
        """[N, Dt] token features → the model input (masra.model.feature_inference.prepare_query)."""
        return prepare_query(self.inputs, query_feats)

    def predict(self, video_feats: Any, query_feats: Any, duration: float | None = None, top_k: int = 10) -> Prediction:
        """Moments and per-clip saliency for one (video, query) pair; ``duration`` defaults to clips × clip_length."""
        return self.predict_batch([video_feats], [query_feats], [duration], top_k=top_k)[0]

    def predict_batch(
        self,
        videos: Sequence[Any],
        queries: Sequence[Any],
        durations: Sequence[float | None] | None = None,
        top_k: int = 10,
    ) -> list[Prediction]:
        """:meth:`predict` for many pairs in one run of the graph (padded like the training collate)."""
        return predict_pairs(self._forward, self.inputs, self.info.postprocess, videos, queries, durations, top_k=top_k)

    def predict_video_features(
        self, video_feats: Any, query_feats: Any, duration: float | None = None, top_k: int | None = None
    ) -> Prediction:
        """One query over a whole video's raw features [L, D] of any length: sliding windows of max_v_l clips
        (masra.video.windows), as ``Grounder.predict_video`` does; ``top_k`` defaults to eval.max_after_nms."""
        video = as_features(video_feats, "video_feats")
        duration = float(duration) if duration is not None else video.shape[0] * self.clip_length
        top_k = top_k if top_k is not None else self.info.postprocess.max_after_nms
        pred, _ = predict_sliding(lambda feats, length, k: self.predict(feats, query_feats, duration=length, top_k=k),
                                  video, self.inputs, duration, self.info.postprocess, top_k)
        return pred

    def _forward(
        self, video: np.ndarray, video_mask: np.ndarray, query: np.ndarray, query_mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The graph on one padded batch (masra.model.feature_inference.Forward)."""
        feeds = dict(zip(INPUT_NAMES, (video, video_mask, query, query_mask)))
        logits, spans, saliency = self.session.run(list(OUTPUT_NAMES), feeds)
        return logits, spans, saliency
