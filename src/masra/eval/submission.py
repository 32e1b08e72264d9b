"""Loading and validating prediction (submission) and ground-truth rows for evaluation.

Every problem raises MasraError naming the file (or "submission"/"ground truth" for in-memory rows),
the 1-based line/row and the field.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from itertools import chain
from pathlib import Path
from typing import Any

from masra.datasets import SALIENCY_ONLY_DATASETS
from masra.data.jsonl import iter_jsonl
from masra.data.label_rules import RowChecker, check_label, check_qvh_saliency, check_windows
from masra.data.paths import qid_clash
from masra.errors import MasraError

WINDOWS = "pred_relevant_windows"
SALIENCY = "pred_saliency_scores"


_NUMBER_TYPES = {int, float}  # exact types: bool (a subclass of int) is not a number here


def _is_number(value: Any) -> bool:
    return type(value) in _NUMBER_TYPES


def _all_finite_numbers(values: Iterable[Any]) -> bool:
    """Fast check (C-level iteration) that every value is a finite int/float."""
    values = list(values)
    return set(map(type, values)) <= _NUMBER_TYPES and all(map(math.isfinite, values))


def _check_qid(row: dict[str, Any], where: dict[str, Any]) -> None:
    if "qid" not in row:
        raise MasraError("missing", field="qid", **where)
    if type(row["qid"]) not in (int, str):
        raise MasraError(f"must be an int or a string, got {type(row['qid']).__name__}", field="qid", **where)


def _check_unique_qid(row: dict[str, Any], seen: dict[str, tuple[Any, int]], where: dict[str, Any]) -> None:
    _check_qid(row, where)
    clash = qid_clash(row["qid"], where["line"], seen)
    if clash is not None:
        raise MasraError(clash, field="qid", **where)


def _check_scores(values: Any, field: str, where: dict[str, Any]) -> None:
    if isinstance(values, list) and values and _all_finite_numbers(values):
        return
    if not isinstance(values, list):
        raise MasraError(f"must be a list of numbers, got {type(values).__name__}", field=field, **where)
    if not values:
        raise MasraError("must not be empty (one score per clip)", field=field, **where)
    for i, v in enumerate(values):
        if not _is_number(v):
            raise MasraError(f"entry {i} must be a number, got {v!r}", field=field, **where)
        if not math.isfinite(v):
            raise MasraError(f"entry {i} is {v} (scores must be finite)", field=field, **where)


def _check_pred_windows(values: Any, field: str, where: dict[str, Any]) -> None:
    """Predicted windows: a list (may be empty) of finite [start <= end, score] triples."""
    if (
        isinstance(values, list)
        and all(type(w) is list and len(w) == 3 for w in values)
        and _all_finite_numbers(chain.from_iterable(values))
        and all(w[0] <= w[1] for w in values)
    ):
        return
    shape = "[start, end, score]"
    if not isinstance(values, list):
        raise MasraError(f"must be a list of {shape} lists, got {type(values).__name__}", field=field, **where)
    for i, w in enumerate(values):
        if not isinstance(w, list) or len(w) != 3:
            raise MasraError(f"window {i} must be {shape}, got {w!r}", field=field, **where)
        for v in w:
            if not _is_number(v):
                raise MasraError(f"window {i} must hold numbers, got {w!r}", field=field, **where)
            if not math.isfinite(v):
                raise MasraError(f"window {i} holds {v} (numbers must be finite)", field=field, **where)
        if w[1] < w[0]:
            raise MasraError(f"window {i} ends before it starts: {w!r}", field=field, **where)


def validate_submission(rows: Sequence[dict[str, Any]], source: str = "submission", lines: Sequence[int] | None = None) -> None:
    """Check every prediction row: qid (int or str, unique), ``pred_relevant_windows`` as finite
    [start <= end, score] triples, ``pred_saliency_scores`` as a non-empty list of finite numbers.

    The field set follows the first row (as in the reference evaluator): every row must carry the
    fields the first row has.
    """
    if not rows:
        raise MasraError("no prediction rows", file=source)
    wanted = [f for f in (WINDOWS, SALIENCY) if f in rows[0]]
    if not wanted:
        raise MasraError(f"the first row has neither {WINDOWS!r} nor {SALIENCY!r}", file=source, line=_line(lines, 0))
    seen: dict[str, tuple[Any, int]] = {}
    for i, row in enumerate(rows):
        where = {"file": source, "line": _line(lines, i)}
        _check_unique_qid(row, seen, where)
        for field in wanted:
            if field not in row:
                raise MasraError("missing (the first row has it, so every row needs it)", field=field, **where)
        if WINDOWS in wanted:
            _check_pred_windows(row[WINDOWS], WINDOWS, where)
        if SALIENCY in wanted:
            _check_scores(row[SALIENCY], SALIENCY, where)


def validate_ground_truth(
    rows: Sequence[dict[str, Any]],
    *,
    moments: bool,
    saliency: bool,
    source: str = "ground truth",
    lines: Sequence[int] | None = None,
) -> None:
    """Check GT rows for what the evaluation needs (the evaluation level of :mod:`masra.data.label_rules`).

    moments: ``relevant_windows`` non-empty [start <= end] pairs. saliency (QVHighlights):
    ``duration`` >= 2 s, ``relevant_clip_ids`` inside the video's int(duration / 2) clips and one row of
    3 annotator scores per id in ``saliency_scores``.
    """
    if not rows:
        raise MasraError("no ground-truth rows", file=source)
    seen: dict[str, tuple[Any, int]] = {}
    for i, row in enumerate(rows):
        c = _row_checker(row, seen, source, _line(lines, i))
        if moments:
            check_windows(c)
        if saliency and c.ok:
            check_qvh_saliency(c)
        c.raise_first()


def validate_label_matrix(rows: Sequence[dict[str, Any]], source: str = "ground truth", lines: Sequence[int] | None = None) -> None:
    """TVSum / YouTube Highlights GT: qid, a string ``domain`` and ``label`` = [n_clips x n_annotators] numbers
    (the evaluation level of :mod:`masra.data.label_rules`)."""
    if not rows:
        raise MasraError("no ground-truth rows", file=source)
    seen: dict[str, tuple[Any, int]] = {}
    for i, row in enumerate(rows):
        c = _row_checker(row, seen, source, _line(lines, i))
        check_label(c)
        c.raise_first()


def _row_checker(row: dict[str, Any], seen: dict[str, tuple[Any, int]], source: str, line: int) -> RowChecker:
    """A checker of one GT row, after its qid (present, int or str, unique) has passed."""
    _check_unique_qid(row, seen, {"file": source, "line": line})
    return RowChecker(source, line, row, [])


def match_queries(
    submission: Sequence[dict[str, Any]], ground_truth: Sequence[dict[str, Any]], match_number: bool
) -> tuple[list[dict[str, Any]], dict[Any, dict[str, Any]]]:
    """Submission rows to score (file order) and the GT row of each qid.

    match_number=True requires the two qid sets to be equal; otherwise only shared qids are scored.
    """
    gt_by_qid = {row["qid"]: row for row in ground_truth}
    pred_qids = [row["qid"] for row in submission]
    if match_number:
        pred_set = set(pred_qids)
        missing = [q for q in gt_by_qid if q not in pred_set]
        extra = [q for q in pred_qids if q not in gt_by_qid]
        if missing or extra:
            raise MasraError(
                "qids of the submission and the ground truth must match "
                f"({len(missing)} missing, e.g. {missing[:5]}; {len(extra)} not in the ground truth, e.g. {extra[:5]}); "
                "pass match_number=False (CLI: --no-match-number) to score only the shared qids",
                field="qid",
            )
    rows = [row for row in submission if row["qid"] in gt_by_qid]
    if not rows:
        raise MasraError("the submission and the ground truth share no qid", field="qid")
    return rows, gt_by_qid


def _line(lines: Sequence[int] | None, index: int) -> int:
    return lines[index] if lines is not None else index + 1


def _read_rows(path: str | Path) -> tuple[list[dict[str, Any]], list[int]]:
    numbered = list(iter_jsonl(path))
    return [row for _, row in numbered], [n for n, _ in numbered]


def load_submission(path: str | Path) -> list[dict[str, Any]]:
    """Read and validate a prediction JSONL file (errors name its path and line)."""
    rows, lines = _read_rows(path)
    validate_submission(rows, source=str(path), lines=lines)
    return rows


def load_ground_truth(path: str | Path, dataset: str = "qvhighlights") -> list[dict[str, Any]]:
    """Read a GT JSONL file and check the fields an evaluation of ``dataset`` uses (errors name its path
    and line): moment windows always, QVHighlights saliency fields when the first row has them.
    """
    rows, lines = _read_rows(path)
    if dataset in SALIENCY_ONLY_DATASETS:
        validate_label_matrix(rows, source=str(path), lines=lines)
    else:
        saliency = bool(rows) and "saliency_scores" in rows[0]
        validate_ground_truth(rows, moments=True, saliency=saliency, source=str(path), lines=lines)
    return rows
