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

    def with_overrides(self, overrides: Sequence[str]) -> "FeatureFiles":
        """These settings with ``key=value`` overrides (`masra predict --set` on an export; values parsed as YAML,
        as the config's overrides are), for the config keys of ``FILE_SETTINGS`` only: an export's model, inputs
        and post-processing are fixed when it is written."""
        if not overrides:
            return self
        import yaml

        changes: dict[str, Any] = {}
        for item in overrides:
            key, sep, raw = item.partition("=")
            key = key.strip()
            name = next((name for name, config_key in FILE_SETTINGS.items() if config_key == key), None)
            if not sep or name is None:
                raise MasraError(f"--set {item!r}: on an export only {', '.join(FILE_SETTINGS.values())} can be set "
                                 "(its model and post-processing are fixed when it is exported)", field="--set")
            try:
                value = yaml.safe_load(raw) if raw else None
            except yaml.YAMLError as err:
                raise MasraError(f"--set {item!r}: not a YAML value ({err})", field=key) from None
            changes[name] = _checked_file_setting(name, value, raw, key)
        return dataclasses.replace(self, **changes)


# Each FeatureFiles field's config key: what `masra predict --set` may change on an export.
FILE_SETTINGS = {"domain": "data.domain", "eval_path": "data.eval_path", "test_path": "data.test_path",
                 "v_feat_dirs": "data.v_feat_dirs", "t_feat_dir": "data.t_feat_dir",
                 "t_feat_prefix": "data.t_feat_prefix", "t_feat_key": "data.t_feat_key",
                 "batch_size": "train.eval_batch_size"}


def _checked_file_setting(name: str, value: Any, raw: str, key: str) -> Any:
    """``value`` as FeatureFiles' field ``name`` takes it, or an error naming ``key``."""
    if name == "v_feat_dirs":
        if not (isinstance(value, list) and value and all(isinstance(d, str) and d for d in value)):
            raise MasraError(f"{raw!r} is not a list of folder names, e.g. [features/clip]", field=key)
        return value
    if name == "batch_size":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise MasraError(f"{raw!r} is not a positive integer", field=key)
        return value
    if name in ("t_feat_prefix", "t_feat_key"):
        value = raw if value is None else value  # an empty prefix is one (TACoS' text files have none)
        if not isinstance(value, str) or (name == "t_feat_key" and not value):
            raise MasraError(f"{raw!r} is not a {'file name prefix' if name == 't_feat_prefix' else 'key'}", field=key)
        return value
    if value is not None and not isinstance(value, str):
        raise MasraError(f"{raw!r} is not a path (or empty for none)", field=key)
    return value


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
