"""The official QVHighlights evaluator (moment_detr ``standalone_eval``), number for number, in its JSON layout."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from masra.errors import MasraError
from masra.eval.highlight import SALIENCY_LEVELS, highlight_metrics, saliency_matrices
from masra.eval.moment_retrieval import evaluate_moment_retrieval
from masra.eval.percent import to_percent
from masra.eval.submission import SALIENCY, WINDOWS, match_queries, validate_ground_truth, validate_submission

logger = logging.getLogger(__name__)


def _warn_unsorted(rows: Sequence[dict[str, Any]]) -> None:
    unsorted = sum(
        1 for row in rows if any(a[2] < b[2] for a, b in zip(row[WINDOWS], row[WINDOWS][1:]))
    )
    if unsorted:
        logger.warning(
            "%d of %d rows have pred_relevant_windows not sorted by score (descending); R1 and mIoU use the "
            "FIRST row as the top-1 prediction, as the official evaluator does",
            unsorted, len(rows),
        )


def _moment_brief(mr: dict[str, dict[str, Any]], extras: bool) -> dict[str, float | None]:
    full = mr["full"]
    brief = {
        "MR-full-mAP": full["MR-mAP"]["average"],
        "MR-full-mAP@0.5": full["MR-mAP"]["0.5"],
        "MR-full-mAP@0.75": full["MR-mAP"]["0.75"],
        "MR-short-mAP": mr["short"]["MR-mAP"]["average"],
        "MR-middle-mAP": mr["middle"]["MR-mAP"]["average"],
        "MR-long-mAP": mr["long"]["MR-mAP"]["average"],
        "MR-full-R1@0.5": full["MR-R1"]["0.5"],
        "MR-full-R1@0.7": full["MR-R1"]["0.7"],
    }
    if extras:
        brief["MR-full-R1@0.3"] = full["MR-R1"]["0.3"]
        brief["MR-full-mIoU"] = full["MR-mIoU"]
    return dict(sorted(brief.items()))


def _highlight_results(rows: Sequence[dict[str, Any]], gt_by_qid: dict[Any, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    gt_rows = [gt_by_qid[row["qid"]] for row in rows]
    gt, num_clips = saliency_matrices(
        [g["duration"] for g in gt_rows], [g["relevant_clip_ids"] for g in gt_rows], [g["saliency_scores"] for g in gt_rows]
    )
    per_level = highlight_metrics([row[SALIENCY] for row in rows], gt, num_clips)
    return {
        f"HL-min-{name}": {
            "HL-mAP": to_percent(float(np.mean(per_level[name]["ap"]))),
            "HL-Hit1": to_percent(float(np.mean(per_level[name]["hit1"]))),
        }
        for name, _ in SALIENCY_LEVELS
    }


def eval_submission(
    submission: Sequence[dict[str, Any]],
    ground_truth: Sequence[dict[str, Any]],
    verbose: bool = False,
    match_number: bool = True,
    *,
    extras: bool = False,
    strict_empty: bool = False,
    highlights: bool = True,
    ground_truth_checked: bool = False,
) -> dict[str, Any]:
    """Score a QVHighlights-format submission like moment_detr's ``eval_submission``.

    MR metrics run when the first row has ``pred_relevant_windows``, HL metrics when it has
    ``pred_saliency_scores`` (and ``highlights`` is on). ``extras`` adds CG-DETR's R1@0.3..0.95 and
    mIoU keys; ``strict_empty`` makes a query with no predicted window count as AP 0 instead of leaving
    the mAP mean. ``ground_truth_checked``: the GT rows passed the annotation rules already (see
    :func:`masra.eval.evaluate`) and are not checked again. Returns {"brief": ..., then the sorted sections
    "HL-min-*", "full", "long", ...}.
    """
    validate_submission(submission)
    rows, gt_by_qid = match_queries(submission, ground_truth, match_number)
    do_moments = WINDOWS in rows[0]
    do_highlights = highlights and SALIENCY in rows[0]
    if not (do_moments or do_highlights):
        raise MasraError(f"nothing to evaluate: the rows have no {WINDOWS!r}", field=WINDOWS)
    if not ground_truth_checked:
        validate_ground_truth([gt_by_qid[row["qid"]] for row in rows], moments=do_moments, saliency=do_highlights)

    sections: dict[str, Any] = {}
    brief: dict[str, float | None] = {}
    if do_moments:
        _warn_unsorted(rows)
        qids = [row["qid"] for row in rows]
        mr = evaluate_moment_retrieval(
            qids,
            {row["qid"]: row[WINDOWS] for row in rows},
            {q: gt_by_qid[q]["relevant_windows"] for q in qids},
            extras=extras,
            strict_empty=strict_empty,
        )
        sections.update(mr)
        brief.update(_moment_brief(mr, extras))
    if do_highlights:
        hl = _highlight_results(rows, gt_by_qid)
        sections.update(hl)
        for section, values in hl.items():
            for key, value in values.items():
                brief[f"{section}-{key.split('-')[1]}"] = value
    if verbose:
        logger.info("evaluated %d queries: %s", len(rows), brief)
    return {"brief": brief, **dict(sorted(sections.items()))}
