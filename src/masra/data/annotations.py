"""Annotation records for the five supported datasets, with validation that names file, line and field.

The rules of the labels live in :mod:`masra.data.label_rules` (shared with the evaluator's ground-truth
reader, which applies a subset of them); this module adds the row's identity (qid, query, duration, vid)
and the per-file checks (unique qids, at least one row).

Formats (docs/data.md, "Annotation files"): QVHighlights, Charades-STA, TACoS (moment retrieval, QVH-style JSONL),
TVSum and YouTube Highlights (per-clip ``label`` matrices). ``load_annotations`` returns typed records or
raises the first error; ``check_annotations`` collects every error (up to a limit) for ``masra data check``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from masra.data.jsonl import iter_jsonl_rows
from masra.data.label_rules import RowChecker, check_label, check_qvh_saliency, check_windows
from masra.data.paths import qid_clash, unsafe_name
from masra.datasets import DATASETS, SALIENCY_ONLY_DATASETS
from masra.errors import MasraError

DEFAULT_MAX_ERRORS = 100

_QVH_VID = re.compile(r"^.+_\d+(?:\.\d+)?_\d+(?:\.\d+)?$")


def split_qvh_vid(vid: str) -> tuple[str, float, float] | None:
    """A QVHighlights vid ``{youtube_id}_{start}_{end}`` (seconds into the YouTube video; the id may contain
    '_') as (youtube_id, start, end); None for any other vid."""
    if not _QVH_VID.match(vid):
        return None
    youtube_id, start, end = vid.rsplit("_", 2)
    return (youtube_id, float(start), float(end)) if float(end) > float(start) else None


@dataclass
class AnnotationRecord:
    """One query (or, for TVSum / YouTube Highlights, one video) of an annotation file."""

    qid: int | str
    query: str
    duration: float
    vid: str
    dataset: str
    file: str
    line: int
    relevant_windows: list[list[float]] | None = None  # [[start_s, end_s], ...]
    relevant_clip_ids: list[int] | None = None  # QVHighlights: 2-s clip indices inside the windows
    saliency_scores: list[list[int]] | None = None  # QVHighlights: one [a1, a2, a3] row per relevant clip
    label: list[list[float]] | None = None  # TVSum: [n_clips, 20] scores 1..5; YouTube: [n_clips, 1] 0/1
    domain: str | None = None

    @property
    def has_labels(self) -> bool:
        """True when the record carries training targets (windows for MR sets, ``label`` for HD sets)."""
        if self.dataset in SALIENCY_ONLY_DATASETS:
            return self.label is not None
        return self.relevant_windows is not None

    @property
    def youtube_id(self) -> str:
        """The source video: QVHighlights vids are ``{youtube_id}_{start}_{end}`` (the id may contain '_')."""
        segment = split_qvh_vid(self.vid) if self.dataset == "qvhighlights" else None
        return segment[0] if segment is not None else self.vid

    def to_meta(self) -> dict[str, Any]:
        """The dict carried in ``GroundingBatch.meta``: ids, query, duration and every annotation field known."""
        meta: dict[str, Any] = {"qid": self.qid, "vid": self.vid, "query": self.query, "duration": self.duration}
        for name in ("relevant_windows", "relevant_clip_ids", "saliency_scores", "label", "domain"):
            value = getattr(self, name)
            if value is not None:
                meta[name] = value
        return meta

    def sample(self, video: Any) -> tuple[Any, dict[str, Any]]:
        """The clips of ``video`` (its features [L, D], as ``FeatureLoader.video`` reads them) this record is a
        sample of, and the sample's batch meta (``to_meta`` and ``ctx_l``, the clip count): TVSum / YouTube
        Highlights label one clip per ``label`` row, and a longer video is cut to them (as CG-DETR for TVSum)."""
        if self.label is not None and len(self.label) < len(video):
            video = video[: len(self.label)]
        meta = self.to_meta()
        meta["ctx_l"] = len(video)
        return video, meta


def detect_dataset(row: dict[str, Any]) -> str:
    """Guess the dataset of a row: label matrices → TVSum (20 annotators) / YouTube (1); QVH by its fields or
    vid pattern; string qids → TACoS; otherwise Charades-STA."""
    label = row.get("label")
    if isinstance(label, list) and label:
        first = label[0]
        return "youtube_highlights" if isinstance(first, list) and len(first) == 1 else "tvsum"
    if row.get("saliency_scores") is not None or row.get("relevant_clip_ids") is not None:
        return "qvhighlights"
    if isinstance(row.get("vid"), str) and _QVH_VID.match(row["vid"]):
        return "qvhighlights"
    if isinstance(row.get("qid"), str):
        return "tacos"
    return "charades_sta"


def _check_common(c: RowChecker) -> tuple[int | str, str, float, str] | None:
    present = [c.require(k) for k in ("qid", "query", "duration", "vid")]
    if not all(present):
        return None
    qid, query, vid = c.row["qid"], c.row["query"], c.row["vid"]
    if isinstance(qid, bool) or not isinstance(qid, (int, str)) or qid == "":
        c.fail("qid", f"expected an integer or a non-empty string, got {qid!r}")
    if not isinstance(query, str):
        c.fail("query", f"expected a string, got {query!r}")
    if not isinstance(vid, str) or not vid:
        c.fail("vid", f"expected a non-empty string, got {vid!r}")
    elif reason := unsafe_name(vid):
        c.fail("vid", f"refusing {vid!r} as a file name: {reason}")
    if isinstance(qid, str) and qid and (reason := unsafe_name(qid)):
        c.fail("qid", f"refusing {qid!r} as a file name: {reason}")
    duration = c.number(c.row["duration"], "duration")
    if duration is not None and duration <= 0:
        c.fail("duration", f"must be positive, got {duration}")
    if not c.ok:
        return None
    return qid, query, float(duration), vid  # type: ignore[arg-type]


def _parse_row(path: str, line: int, row: dict[str, Any], dataset: str, errors: list[MasraError]) -> AnnotationRecord | None:
    c = RowChecker(path, line, row, errors)
    common = _check_common(c)
    if common is None:
        return None
    qid, query, duration, vid = common
    record = AnnotationRecord(
        qid=qid, query=query, duration=duration, vid=vid, dataset=dataset, file=path, line=line,
        domain=row.get("domain") if isinstance(row.get("domain"), str) else None,
    )
    if dataset in SALIENCY_ONLY_DATASETS:
        record.label = check_label(c, dataset, duration)
    elif row.get("relevant_windows") is not None:
        record.relevant_windows = check_windows(c, duration)
        if dataset == "qvhighlights" and record.relevant_windows is not None:
            saliency = check_qvh_saliency(c, record.relevant_windows)
            if saliency is not None:
                record.relevant_clip_ids, record.saliency_scores = saliency
    else:
        for name in ("relevant_clip_ids", "saliency_scores"):
            if row.get(name) is not None:
                c.fail("relevant_windows", f"missing required key ('{name}' is given, so the row is labelled)")
                break
    return record if c.ok else None


@dataclass
class CheckResult:
    """Outcome of validating one annotation file."""

    path: str
    dataset: str
    records: list[AnnotationRecord]
    errors: list[MasraError]
    n_rows: int
    truncated: bool  # True when more errors existed than the limit kept

    @property
    def ok(self) -> bool:
        return not self.errors


def check_annotations(
    path: str | Path, dataset: str | None = None, *, max_errors: int = DEFAULT_MAX_ERRORS
) -> CheckResult:
    """Validate every row of ``path``; keep the valid records and up to ``max_errors`` errors."""
    path = Path(path)
    where = str(path)
    if dataset is not None and dataset not in DATASETS:
        raise MasraError(f"unknown dataset {dataset!r}; one of {', '.join(DATASETS)}", field="dataset")
    if not path.is_file():
        raise MasraError("file not found", file=path)
    errors: list[MasraError] = []
    records: list[AnnotationRecord] = []
    seen_qids: dict[str, tuple[int | str, int]] = {}
    n_rows = 0
    n_errors = 0
    for line_no, row in iter_jsonl_rows(path):
        n_rows += 1
        row_errors: list[MasraError] = []
        if isinstance(row, MasraError):
            row_errors.append(row)
        else:
            if dataset is None:
                dataset = detect_dataset(row)
            record = _parse_row(where, line_no, row, dataset, row_errors)
            duplicate = qid_clash(row.get("qid"), line_no, seen_qids)
            if duplicate is not None:
                row_errors.append(MasraError(duplicate, file=where, line=line_no, field="qid"))
                record = None
            if record is not None:
                records.append(record)
        n_errors += len(row_errors)
        errors.extend(row_errors[: max(0, max_errors - len(errors))])
    if n_rows == 0:
        errors.append(MasraError("no annotation rows in the file", file=where))
        n_errors += 1
    return CheckResult(where, dataset or "unknown", records, errors, n_rows, truncated=n_errors > len(errors))


def load_annotations(path: str | Path, dataset: str | None = None) -> list[AnnotationRecord]:
    """Read and validate an annotation file; ``dataset=None`` detects the format from the first row.

    Raises the first MasraError found (its message says how many more there are).
    """
    result = check_annotations(path, dataset)
    if result.errors:
        first = result.errors[0]
        more = len(result.errors) - 1
        suffix = f" (and {more}{'+' if result.truncated else ''} more; run `masra data check {path}`)" if more else ""
        raise MasraError(first.message + suffix, file=first.file, line=first.line, field=first.field)
    return result.records
