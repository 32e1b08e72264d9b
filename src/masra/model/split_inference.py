"""Prediction over an annotation file's records on feature files, without torch: which file (a configured split
or any annotation file), its records, their features, the submission rows and the official metrics.

One implementation for both back ends: ``masra.inference.split.predict_split`` (the torch model, through the
evaluation loop ``masra.model.prediction.predict_rows``) and ``masra.runtime.OnnxGrounder.predict_split`` (the
ONNX export, through :func:`predict_records`) pass the back end's rows as a function of the records
(:func:`predict_annotations`); a sample's inputs are read by the ``FeatureLoader`` and
``AnnotationRecord.sample`` that training's ``GroundingDataset`` reads them with, and its rows are made by the
one post-processing (``masra.model.postprocess``).

``data`` below is anything with the attributes of ``masra.config.DataConfig`` that reading a split needs
(``dataset``, ``domain``, ``eval_path``, ``test_path``, ``v_feat_dirs``, ``t_feat_dir``, ``t_feat_prefix``,
``t_feat_key``, ``max_v_l``, ``max_q_l``, ``use_tef``, ``normalize_video``, ``normalize_text``,
``clip_length``): a checkpoint's ``cfg.data``, or an export's :class:`SplitData`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from masra.data.features import FeatureLoader
from masra.data.splits import ground_truth_rows, load_records, split_path
from masra.errors import MasraError
from masra.model.feature_inference import Forward, InputSpec, pad_rows
from masra.model.postprocess import WindowSettings, outputs_to_submission

# The records of an annotation file -> their submission rows, in record order.
RowsOf = Callable[[list[Any]], list[dict[str, Any]]]


@dataclass
class SplitPredictions:
    rows: list[dict[str, Any]]  # official submission rows
    metrics: dict[str, Any] | None  # official metrics, None when the annotations have no labels
    records: list[Any]  # the annotation records, in row order
    clip_length: float  # seconds per clip of the model's features


@dataclass(frozen=True)
class FeatureFiles:
    """Where the checkpoint's config reads annotation splits and feature files (``data`` in ``export.json``): its
    ``data.*`` file settings as it records them (paths as written there) and ``train.eval_batch_size``."""

    domain: str | None
    eval_path: str | None
    test_path: str | None
    v_feat_dirs: list[str]
    t_feat_dir: str | None
    t_feat_prefix: str
    t_feat_key: str
    batch_size: int

    @classmethod
    def of(cls, cfg: Any) -> "FeatureFiles":
        """From a checkpoint's config (``masra.config.Config``)."""
        data = cfg.data
        return cls(data.domain, data.eval_path, data.test_path, [str(d) for d in data.v_feat_dirs], data.t_feat_dir,
                   str(data.t_feat_prefix), str(data.t_feat_key), int(cfg.train.eval_batch_size))


@dataclass(frozen=True)
class SplitData(FeatureFiles):
    """An export's file locations (``data`` in ``export.json``) with the rest of the ``data.*`` settings that
    reading its splits and feature files needs, as plain values (``inputs`` in ``export.json``)."""

    dataset: str
    max_v_l: int
    max_q_l: int
    use_tef: bool
    normalize_video: bool
    normalize_text: bool
    clip_length: float

    @classmethod
    def from_export(cls, files: FeatureFiles, dataset: str, inputs: InputSpec) -> "SplitData":
        """From an export's file locations, dataset and inputs."""
        return cls(**dataclasses.asdict(files), dataset=dataset, max_v_l=inputs.max_v_l, max_q_l=inputs.max_q_l,
                   use_tef=inputs.use_tef, normalize_video=inputs.normalize_video,
                   normalize_text=inputs.normalize_text, clip_length=inputs.clip_length)


def predict_annotations(
    rows_of: RowsOf, data: Any, *, split: str | None = None, annotations: str | Path | None = None
) -> SplitPredictions:
    """Submission rows of the records of ``split`` (val or test: the file ``data`` names) or of the file
    ``annotations`` (exactly one of them), and the official metrics when every record has labels."""
    from masra.eval import evaluate as evaluate_submission

    if (split is None) == (annotations is None):
        raise MasraError("give exactly one of a split or an annotation file", field="split")
    path = str(annotations) if annotations is not None else split_path(data, split)
    records = load_records(path, data)
    rows = rows_of(records)
    gt_rows = ground_truth_rows(records)
    metrics = (
        evaluate_submission(data.dataset, rows, gt_rows, ground_truth_checked=True) if gt_rows is not None else None
    )
    return SplitPredictions(rows=rows, metrics=metrics, records=records, clip_length=float(data.clip_length))


def predict_records(
    forward: Forward,
    records: Sequence[Any],
    features: FeatureLoader,
    settings: WindowSettings,
    clip_length: float,
    batch_size: int,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Submission rows of ``records`` on a NumPy forward: batches of ``batch_size`` records in file order,
    padded as the training collate pads (so the rows are those of the evaluation loop's batches)."""
    if batch_size <= 0:
        raise MasraError("must be positive", field="batch_size")
    rows: list[dict[str, Any]] = []
    for start in range(0, len(records), batch_size):
        videos, queries, meta = [], [], []
        for record in records[start : start + batch_size]:
            video, info = record.sample(features.video(record.vid))
            videos.append(video)
            queries.append(features.text(record.qid))
            meta.append(info)
        video, video_mask = pad_rows(videos)
        logits, spans, saliency = forward(video, video_mask, *pad_rows(queries))
        outputs = {"pred_logits": logits, "pred_spans": spans, "saliency_scores": saliency, "video_mask": video_mask}
        rows.extend(outputs_to_submission(outputs, meta, settings, clip_length))
        if progress:
            progress(min(start + batch_size, len(records)), len(records))
    return rows
