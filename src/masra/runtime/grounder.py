""":class:`OnnxGrounder`: an export folder on onnxruntime, the torch-free twin of masra.inference.Grounder
(the same preparation, padding and post-processing code: masra.model.feature_inference; the same video-file
methods: masra.model.video_inference, on the export's CLIP encoder)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
from masra.errors import MasraError
from masra.model.postprocess import PostprocessSettings
from masra.model.split_inference import SplitData, SplitPredictions, predict_annotations, predict_records
from masra.runtime.bundle import INPUT_NAMES, OUTPUT_NAMES, ExportInfo, read_export
from masra.runtime.session import open_session
from masra.model.video_inference import VideoGrounding


class OnnxGrounder(VideoGrounding):
    """Moment retrieval + highlight detection with an exported model, on features the caller provides, on an
    annotation file's feature files (``predict_split``), and on video files when the export holds the CLIP
    encoder (``extract_video``, ``encode_query``, ``predict_video``)."""

    def __init__(self, session: Any, info: ExportInfo, folder: str | Path, threads: int | None = None) -> None:
        self.session = session
        self.info = info
        self.inputs = info.inputs
        self.folder = Path(folder)
        self.threads = threads
        self._encoder: Any = None

    @classmethod
    def from_export(cls, folder: str | Path, threads: int | None = None, spinning: bool = True) -> "OnnxGrounder":
        """Load the export folder ``folder`` (``masra export --out``); ``threads``: onnxruntime's intra-op threads,
        ``spinning``: whether they spin-wait between runs (masra.runtime.session.open_session)."""
        model, info = read_export(folder)
        return cls(open_session(model, threads, spinning), info, folder, threads)

    @property
    def postprocess(self) -> PostprocessSettings:
        return self.info.postprocess

    @property
    def encoder(self) -> Any:
        """The export's CLIP encoder (masra.runtime.clip.OnnxClipEncoder), loaded on first use."""
        if self._encoder is None:
            if self.info.clip is None:
                raise MasraError("this export has no video encoder; export it with masra export --encoder "
                                 "clip:NAME_OR_PATH to ground video files", file=self.folder, field="encoder")
            from masra.runtime.clip import OnnxClipEncoder

            self._encoder = OnnxClipEncoder.from_export(self.folder, self.info.clip, self.threads)
        return self._encoder

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
        return predict_pairs(self._forward, self.inputs, self.postprocess, videos, queries, durations, top_k=top_k)

    def predict_video_features(
        self, video_feats: Any, query_feats: Any, duration: float | None = None, top_k: int | None = None
    ) -> Prediction:
        """One query over a whole video's raw features [L, D] of any length: sliding windows of max_v_l clips
        (masra.video.windows), as ``Grounder.predict_video`` does; ``top_k`` defaults to eval.max_after_nms."""
        video = as_features(video_feats, "video_feats")
        duration = float(duration) if duration is not None else video.shape[0] * self.clip_length
        top_k = top_k if top_k is not None else self.postprocess.max_after_nms
        pred, _ = predict_sliding(lambda feats, length, k: self.predict(feats, query_feats, duration=length, top_k=k),
                                  video, self.inputs, duration, self.postprocess, top_k)
        return pred

    def predict_split(
        self, *, split: str | None = None, annotations: str | Path | None = None,
        progress: Callable[[int, int], None] | None = None, overrides: Sequence[str] = (),
    ) -> SplitPredictions:
        """Submission rows (and metrics when every record has labels) of the checkpoint's ``split`` (val or test)
        or of the file ``annotations``, on the feature files the checkpoint's config names (``data`` in
        ``export.json``; ``overrides``: ``key=value`` for its file settings, as `masra predict --set` gives
        them, ``masra.model.split_inference.FILE_SETTINGS``), as ``masra.inference.predict_split`` gives them on
        torch (one implementation: masra.model.split_inference). ``progress(done, total)`` after each batch."""
        from masra.data.features import FeatureLoader

        if self.info.data is None:
            raise MasraError("this export does not record the checkpoint's feature files; export it again with "
                             "this masra to predict on feature files", file=self.folder, field="data")
        files = self.info.data.with_overrides(overrides)
        data = SplitData.from_export(files, self.info.dataset, self.inputs)

        def rows_of(records: list[Any]) -> list[dict[str, Any]]:
            features = FeatureLoader(data, video_dim=self.inputs.v_feat_dim, text_dim=self.inputs.t_feat_dim)
            return predict_records(self._forward, records, features, self.postprocess, self.clip_length,
                                   files.batch_size, progress)

        return predict_annotations(rows_of, data, split=split, annotations=annotations)

    def _forward(
        self, video: np.ndarray, video_mask: np.ndarray, query: np.ndarray, query_mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The graph on one padded batch (masra.model.feature_inference.Forward)."""
        feeds = dict(zip(INPUT_NAMES, (video, video_mask, query, query_mask)))
        logits, spans, saliency = self.session.run(list(OUTPUT_NAMES), feeds)
        return logits, spans, saliency
