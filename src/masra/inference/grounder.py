"""The tensor API: :class:`Grounder` runs a trained model on features the caller provides (and, through
:mod:`masra.model.video_inference`, on video files)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from masra.checkpoint import ModelDims
from masra.config import Config
from masra.data.batch import GroundingBatch
from masra.errors import MasraError
from masra.inference.loading import load_model
from masra.model.feature_inference import InputSpec, Prediction, predict_pairs, prepare_query, prepare_video
from masra.model.video_inference import VideoGrounding

if TYPE_CHECKING:  # the video side (masra.features) is imported only where it is used
    from masra.features.encoder import ClipEncoder

ArrayLike = np.ndarray | torch.Tensor


def _host(value: ArrayLike) -> Any:
    """A tensor as a host array (anything else as it is)."""
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value


class Grounder(VideoGrounding):
    """Moment retrieval + highlight detection with a trained model, on features the caller provides, and on
    video files (masra.model.video_inference: ``extract_video``, ``encode_query``, ``predict_video``)."""

    def __init__(self, model: torch.nn.Module, cfg: Config, dims: ModelDims, device: str | torch.device = "cpu"):
        self.model = model.eval()
        self.cfg = cfg
        self.dims = dims
        self.inputs = InputSpec.of(cfg, dims)
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
    def postprocess(self) -> Any:
        """The post-processing settings (masra.model.postprocess.WindowSettings): the checkpoint's ``eval.*``."""
        return self.cfg.eval

    def prepare_video(self, video_feats: ArrayLike) -> np.ndarray:
        """[L, D] raw features → the model input (masra.model.feature_inference.prepare_video)."""
        return prepare_video(self.inputs, _host(video_feats))

    def prepare_query(self, query_feats: ArrayLike) -> np.ndarray:
        """[N, Dt] token features → the model input (masra.model.feature_inference.prepare_query)."""
        return prepare_query(self.inputs, _host(query_feats))

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
        return predict_pairs(self._forward, self.inputs, self.cfg.eval, [_host(v) for v in videos],
                             [_host(q) for q in queries], durations, top_k=top_k)

    def _forward(
        self, video: np.ndarray, video_mask: np.ndarray, query: np.ndarray, query_mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The model on one padded batch (masra.model.feature_inference.Forward)."""
        meta = [{"qid": i, "vid": str(i), "query": "", "duration": None} for i in range(len(video))]
        batch = GroundingBatch(video_feats=torch.from_numpy(video), video_mask=torch.from_numpy(video_mask),
                               query_feats=torch.from_numpy(query), query_mask=torch.from_numpy(query_mask), meta=meta)
        with torch.inference_mode():
            outputs = self.model(batch.to(self.device))
        return tuple(outputs[key].float().cpu().numpy() for key in ("pred_logits", "pred_spans", "saliency_scores"))

    @property
    def encoder(self) -> "ClipEncoder":
        """The video/query encoder, loaded on first use and checked against the checkpoint's record."""
        if self._encoder is None:
            from masra.inference.video import load_checked_encoder

            self._encoder = load_checked_encoder(self.encoder_spec, self.device, self.dims, self.cfg.data.use_tef,
                                                 where=self.checkpoint)
        return self._encoder
