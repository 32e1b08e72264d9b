"""Official VTG evaluation: the QVHighlights evaluator (number for number), Charades-STA / TACoS moment
retrieval, TVSum top-5 and YouTube Highlights mAP. numpy only.

>>> from masra.eval import evaluate, load_submission, load_ground_truth
>>> metrics = evaluate("qvhighlights", load_submission("preds.jsonl"), load_ground_truth("val.jsonl"))
>>> metrics["brief"]["MR-full-mAP"]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from masra.datasets import DATASETS, SALIENCY_ONLY_DATASETS
from masra.errors import MasraError
from masra.eval.highlight_datasets import eval_tvsum, eval_youtube_highlights
from masra.eval.qvhighlights import eval_submission
from masra.eval.submission import (
    SALIENCY,
    load_ground_truth,
    load_submission,
    match_queries,
    validate_label_matrix,
    validate_submission,
)

__all__ = ["evaluate", "eval_submission", "eval_tvsum", "eval_youtube_highlights", "load_submission", "load_ground_truth"]

MOMENT_ONLY_DATASETS = ("charades_sta", "tacos")


def evaluate(
    dataset: str,
    submission: Sequence[dict[str, Any]],
    ground_truth: Sequence[dict[str, Any]],
    *,
    match_number: bool = True,
    extras: bool | None = None,
    strict_empty: bool = False,
    ground_truth_checked: bool = False,
) -> dict[str, Any]:
    """Score prediction rows against GT rows with ``dataset``'s protocol; the result always has "brief".

    qvhighlights: the official layout (MR + HL, whichever the first row carries).
    charades_sta / tacos: moment retrieval only, CG-DETR's variant (``extras`` on unless set False).
    tvsum / youtube_highlights: per-domain highlight mAP from ``pred_saliency_scores``.
    match_number=True requires the qid sets to be equal; False scores the shared qids.
    ``extras`` (CG-DETR R1@0.3..0.95 + mIoU) and ``strict_empty`` (an empty window list is AP 0)
    apply to the moment-retrieval datasets. ``ground_truth_checked=True`` says the GT rows are
    ``to_meta()`` rows of :mod:`masra.data.annotations` records (``masra.data.splits.ground_truth_rows``):
    the annotation rules include every evaluation rule (:mod:`masra.data.label_rules`), so they are not
    checked again.
    """
    if dataset not in DATASETS:
        raise MasraError(f"unknown dataset {dataset!r}; one of {', '.join(DATASETS)}", field="dataset")
    if dataset in SALIENCY_ONLY_DATASETS:
        validate_submission(submission)
        if SALIENCY not in submission[0]:
            raise MasraError(f"{dataset} is scored from saliency: the rows need {SALIENCY!r}", field=SALIENCY)
        if not ground_truth_checked:
            validate_label_matrix(ground_truth)
        rows, _ = match_queries(submission, ground_truth, match_number)
        scored = {row["qid"] for row in rows}
        gt_rows = [row for row in ground_truth if row["qid"] in scored]
        scorer = eval_tvsum if dataset == "tvsum" else eval_youtube_highlights
        return scorer(rows, gt_rows)
    moment_only = dataset in MOMENT_ONLY_DATASETS
    return eval_submission(
        submission,
        ground_truth,
        match_number=match_number,
        extras=moment_only if extras is None else extras,
        strict_empty=strict_empty,
        highlights=not moment_only,
        ground_truth_checked=ground_truth_checked,
    )
