"""Annotation records of a configured split, as training, evaluation and prediction read them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from masra.errors import MasraError

if TYPE_CHECKING:  # masra.config imports torch; these functions read plain attributes (no torch at run time)
    from masra.config import DataConfig

SPLIT_FIELDS = {"train": "train_path", "val": "eval_path", "test": "test_path"}


def split_path(data_cfg: DataConfig, split: str) -> str:
    """The annotation file of ``split`` (train → data.train_path, val → data.eval_path, test → data.test_path)."""
    if split not in SPLIT_FIELDS:
        raise MasraError(f"unknown split {split!r}; one of {', '.join(SPLIT_FIELDS)}", field="split")
    name = SPLIT_FIELDS[split]
    path = getattr(data_cfg, name)
    if not path:
        raise MasraError(f"no annotation file configured for the {split} split", field=f"data.{name}")
    return path


def load_records(path: str, data_cfg: DataConfig) -> list[Any]:
    """Validated records of ``path``, restricted to ``data_cfg.domain`` when set (TVSum / YouTube Highlights)."""
    from masra.data.annotations import load_annotations

    records = load_annotations(path, data_cfg.dataset)
    if data_cfg.domain is not None:
        records = [r for r in records if r.domain == data_cfg.domain]
        if not records:
            raise MasraError(f"no rows of domain {data_cfg.domain!r}", file=path, field="data.domain")
    if not records:
        raise MasraError("annotation file has no rows", file=path)
    return records


def ground_truth_rows(records: list[Any]) -> list[dict[str, Any]] | None:
    """The records in the official ground-truth layout for the evaluator; None when any record lacks labels.

    The records passed the annotation rules, which include every evaluation rule: evaluate these rows with
    ``masra.eval.evaluate(..., ground_truth_checked=True)``."""
    if not all(record.has_labels for record in records):
        return None
    return [record.to_meta() for record in records]
