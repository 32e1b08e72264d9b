"""Inference from a trained checkpoint: the :class:`Grounder` Python API and split-level evaluation/prediction.

No priors and no MLLM are needed here: a MASRA model runs on video features + query features alone.

    from masra.inference import Grounder
    grounder = Grounder.from_checkpoint("runs/qvh/best")
    pred = grounder.predict(video_feats, query_feats, duration=150)   # raw [L, D] features, [N, Dt] tokens
    pred.windows[0]    # (start_s, end_s, score) of the best moment
    pred.saliency      # [L] per-clip highlight scores

From a video file (the checkpoint records the CLIP encoder of its features; weights must be present):

    video = grounder.extract_video("clip.mp4", progress=lambda stage, done, total: ...)
    pred = grounder.predict_video(video, "when does the chef cut the pizza?")   # or predict_video("clip.mp4", ...)
    pred.windows[:3], pred.saliency, pred.to_row()
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from masra.checkpoint import ModelDims, find_checkpoint, load_weights, read_checkpoint_info
from masra.config import Config, apply_overrides, validate_config
from masra.data.batch import GroundingBatch, pad_sequences
from masra.errors import MasraError

if TYPE_CHECKING:  # the video side (masra.features, masra.video) is imported only where it is used
    from masra.features.encoder import ClipEncoder
    from masra.features.video import Progress, VideoFeatures
    from masra.video.predict import VideoPrediction

__all__ = ["Grounder", "Prediction", "load_model", "predict_split"]

logger = logging.getLogger("masra.inference")

ArrayLike = np.ndarray | torch.Tensor


@dataclass
class Prediction:
    windows: list[tuple[float, float, float]]  # (start_s, end_s, score), best first, dataset post-processing applied
    saliency: np.ndarray  # [L] float32 per-clip saliency (highlight) scores


def load_model(
    checkpoint: str | Path, device: str | torch.device = "cpu", config_overrides: Sequence[str] = ()
) -> tuple[torch.nn.Module, Config, ModelDims]:
    """Rebuild the model of a checkpoint folder from its config and load its weights (eval mode)."""
    from masra.model import build_model

    folder = find_checkpoint(checkpoint)
    cfg, dims, _ = read_checkpoint_info(folder)
    apply_overrides(cfg, list(config_overrides))
    validate_config(cfg)
    model, _ = build_model(cfg, dims.v_feat_dim, dims.t_feat_dim, dims.semantic_dim)
    load_weights(folder, model)
    model.to(torch.device(device)).eval()
    return model, cfg, dims


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

    # ----- from video files ---------------------------------------------------------------------------------
    @property
    def encoder(self) -> "ClipEncoder":
        """The video/query encoder, loaded on first use and checked against the checkpoint's record."""
        if self._encoder is None:
            from masra.features.encoder import ClipEncoder, check_encoder_identity

            if self.encoder_spec is None:
                raise MasraError(f"{self.checkpoint} does not record which encoder made its training features; "
                                 "name one (--encoder clip:NAME_OR_PATH / video_encoder=...)", field="encoder")
            encoder = ClipEncoder.load(self.encoder_spec, self.device)
            check_encoder_identity(self.dims.feature_encoder, self.dims.feature_encoder_fingerprint, encoder,
                                   where=self.checkpoint)
            raw_dims = self.dims.v_source_dims or [self.dims.v_feat_dim - (2 if self.cfg.data.use_tef else 0)]
            if raw_dims != [encoder.video_dim]:
                raise MasraError(f"{self.checkpoint} takes video features of dims {raw_dims}; {encoder.spec} makes "
                                 f"one source of dim {encoder.video_dim}. Only checkpoints trained on this "
                                 "encoder's features alone can ground video files", field="encoder")
            if encoder.text_dim != self.dims.t_feat_dim:
                raise MasraError(f"{self.checkpoint} takes query features of dim {self.dims.t_feat_dim}; "
                                 f"{encoder.spec} makes {encoder.text_dim}", field="encoder")
            self._encoder = encoder
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
        from masra.video.predict import VideoPrediction
        from masra.video.windows import average_saliency, merge_moments, window_starts

        query_feats = self.encode_query(query)
        if not isinstance(video, VideoFeatures):
            video = self.extract_video(video, progress=progress)
        if abs(video.clip_length - self.clip_length) > 1e-6:
            raise MasraError(f"features of {video.clip_length} s clips; this model uses {self.clip_length} s",
                             file=video.path)
        n_clips = video.features.shape[0]
        window = self.cfg.data.max_v_l
        starts = window_starts(n_clips, window)
        size = n_clips if len(starts) == 1 else window
        top_k = top_k if top_k is not None else self.cfg.eval.max_after_nms
        per_window, saliencies = [], []
        for done, start in enumerate(starts, 1):
            offset = start * self.clip_length
            duration = min(size * self.clip_length, video.duration - offset)
            pred = self.predict(video.features[start : start + size], query_feats, duration=duration,
                                top_k=self.cfg.eval.max_before_nms)
            per_window.append(pred.windows)
            saliencies.append(pred.saliency)
            if progress:
                progress("ground", done, len(starts))
        offsets = [start * self.clip_length for start in starts]
        return VideoPrediction(
            query=query.strip(),
            vid=Path(video.path).stem,
            duration=video.duration,
            clip_length=self.clip_length,
            windows=merge_moments(per_window, offsets, video.duration, top_k=top_k),
            saliency=average_saliency(n_clips, starts, saliencies),
            n_windows=len(starts),
        )


def _pad_batch(videos: list[np.ndarray], queries: list[np.ndarray]) -> GroundingBatch:
    """Zero-padded inference batch with float masks (1 = valid), as the data collate builds it."""
    video, video_mask = pad_sequences([torch.from_numpy(v) for v in videos])
    query, query_mask = pad_sequences([torch.from_numpy(q) for q in queries])
    meta = [{"qid": i, "vid": str(i), "query": "", "duration": None} for i in range(len(videos))]
    return GroundingBatch(video_feats=video, video_mask=video_mask, query_feats=query, query_mask=query_mask, meta=meta)


@dataclass
class SplitPredictions:
    rows: list[dict[str, Any]]  # official submission rows
    metrics: dict[str, Any] | None  # official metrics, None when the annotations have no labels
    records: list[Any]  # the annotation records, in row order
    cfg: Config


def predict_split(
    checkpoint: str | Path,
    *,
    split: str | None = None,
    annotations: str | Path | None = None,
    device: str = "auto",
    config_overrides: Sequence[str] = (),
    progress: bool = True,
) -> SplitPredictions:
    """Submission rows (and metrics when ground truth is known) for a configured split or an annotation file."""
    from torch.utils.data import DataLoader

    from masra.data.dataset import GroundingDataset, collate
    from masra.eval import evaluate as evaluate_submission
    from masra.data.splits import ground_truth_rows, load_records, split_path
    from masra.device import resolve_device
    from masra.model.prediction import predict_rows

    torch_device = resolve_device(device)
    model, cfg, dims = load_model(checkpoint, torch_device, config_overrides)
    if (split is None) == (annotations is None):
        raise MasraError("give exactly one of a split or an annotation file", field="split")
    path = str(annotations) if annotations is not None else split_path(cfg.data, split)
    records = load_records(path, cfg.data)
    # Features are checked against the model's input dims (checkpoint metadata); priors are a training-time
    # signal, inference never reads them.
    data_cfg = dataclasses.replace(cfg.data, v_feat_dim=dims.v_feat_dim, t_feat_dim=dims.t_feat_dim, prior_dir=None)
    dataset = GroundingDataset(records, data_cfg, train=False)
    loader = DataLoader(dataset, batch_size=cfg.train.eval_batch_size, shuffle=False, collate_fn=collate,
                        num_workers=cfg.data.num_workers)
    rows = predict_rows(model, loader, cfg, device=torch_device, progress=progress)
    gt_rows = ground_truth_rows(records)
    metrics = evaluate_submission(cfg.data.dataset, rows, gt_rows) if gt_rows is not None else None
    return SplitPredictions(rows=rows, metrics=metrics, records=records, cfg=cfg)


def refuse_existing(path: str | Path | None, force: bool) -> None:
    """Outputs are never overwritten silently."""
    if path is not None and Path(path).exists() and not force:
        raise MasraError("output exists; pass --force to overwrite it", file=path)


def evaluate_checkpoint(
    checkpoint: str | Path,
    split: str,
    out: str | Path | None = None,
    config_overrides: Sequence[str] | None = None,
    *,
    force: bool = False,
    device: str = "auto",
) -> dict[str, Any]:
    """Official metrics of a checkpoint on the configured ``split`` (val or test); written to ``out`` if given."""
    from masra.data.splits import split_path

    refuse_existing(out, force)
    result = predict_split(checkpoint, split=split, device=device, config_overrides=config_overrides or ())
    if result.metrics is None:
        raise MasraError(f"the {split} annotations have no labels; use `masra predict` for a submission file",
                         file=split_path(result.cfg.data, split))
    if out is not None:
        from masra.data.jsonl import write_json

        write_json(out, result.metrics, indent=4)
    return result.metrics
