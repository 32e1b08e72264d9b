"""Inference on video files without torch, one implementation for both back ends: :class:`VideoGrounding`
gives :class:`masra.inference.Grounder` (torch) and :class:`masra.runtime.OnnxGrounder` (onnxruntime) their
``extract_video``, ``encode_query`` and ``predict_video`` (the features side: masra.model.feature_inference).
The video side (masra.features, masra.video: the video extra) is imported only when a method runs, so the
grounders load in a core install.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from masra.errors import MasraError

if TYPE_CHECKING:
    from masra.features.video import Progress, VideoFeatures
    from masra.video.predict import VideoPrediction
    from masra.model.feature_inference import InputSpec, Prediction
    from masra.model.postprocess import WindowSettings


class VideoGrounding:
    """The video-file methods of a grounder that has ``encoder`` (``encode_frames``, ``encode_queries``,
    ``video_dim``, ``image_size``: a ClipEncoder or an OnnxClipEncoder), ``clip_length``, ``inputs``,
    ``postprocess`` and ``predict`` (on features)."""

    encoder: Any
    inputs: InputSpec
    postprocess: WindowSettings
    predict: Callable[..., Prediction]  # (video_feats, query_feats, duration=, top_k=) on raw features

    @property
    def clip_length(self) -> float:
        return self.inputs.clip_length

    def extract_video(self, path: str | Path, progress: Progress | None = None) -> VideoFeatures:
        """Clip features of a video file on this model's clip grid (reusable for many queries)."""
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
        result). Videos longer than the trained length (max_v_l) are covered by sliding windows
        (masra.video.windows) whose moments are merged and whose saliencies are averaged."""
        from masra.features.video import VideoFeatures
        from masra.model.feature_inference import predict_sliding
        from masra.video.predict import VideoPrediction

        query_feats = self.encode_query(query)
        if not isinstance(video, VideoFeatures):
            video = self.extract_video(video, progress=progress)
        if abs(video.clip_length - self.clip_length) > 1e-6:
            raise MasraError(f"features of {video.clip_length} s clips; this model uses {self.clip_length} s",
                             file=video.path)
        top_k = top_k if top_k is not None else self.postprocess.max_after_nms
        pred, n_windows = predict_sliding(
            lambda feats, duration, k: self.predict(feats, query_feats, duration=duration, top_k=k),
            video.features, self.inputs, video.duration, self.postprocess, top_k,
            progress=(lambda done, total: progress("ground", done, total)) if progress else None,
        )
        return VideoPrediction(query=query.strip(), vid=Path(video.path).stem, duration=video.duration,
                               clip_length=self.clip_length, windows=pred.windows, saliency=pred.saliency,
                               n_windows=n_windows)
