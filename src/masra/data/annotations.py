"""Annotation records for the five supported datasets, with validation that names file, line and field.

Formats (docs/data.md, "Annotation files"): QVHighlights, Charades-STA, TACoS (moment retrieval, QVH-style JSONL),
TVSum and YouTube Highlights (per-clip ``label`` matrices). ``load_annotations`` returns typed records or
raises the first error; ``check_annotations`` collects every error (up to a limit) for ``masra data check``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from masra.config import DATASETS, QVH_CLIP_LENGTH, SALIENCY_ONLY_DATASETS
from masra.data.jsonl import iter_jsonl_rows
from masra.data.paths import qid_clash, unsafe_name
from masra.errors import MasraError

# Windows may end this many seconds past ``duration`` (float rounding in the exported files); beyond that
# they are errors. Every shipped file checks clean with it (the largest overshoot in them is 0).
WINDOW_TOLERANCE_S = 0.01
# QVHighlights annotations are on a fixed 2-s clip grid (relevant_clip_ids, saliency_scores).
QVH_ANNOTATORS = 3
QVH_SCORE_RANGE = (0, 4)
TVSUM_ANNOTATORS = 20
TVSUM_SCORE_RANGE = (1, 5)
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


class _RowChecker:
    """Validates one row; every problem is recorded as a MasraError (file, line, field) in ``errors``."""

    def __init__(self, path: str, line: int, row: dict[str, Any], errors: list[MasraError]) -> None:
        self.path, self.line, self.row, self.errors = path, line, row, errors
        self.n_before = len(errors)

    @property
    def ok(self) -> bool:
        return len(self.errors) == self.n_before

    def fail(self, field_name: str | None, message: str) -> None:
        self.errors.append(MasraError(message, file=self.path, line=self.line, field=field_name))

    def require(self, name: str) -> bool:
        if name not in self.row or self.row[name] is None:
            self.fail(name, "missing required key")
            return False
        return True

    def number(self, value: Any, name: str) -> float | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(name, f"expected a number, got {value!r}")
            return None
        if not math.isfinite(value):
            self.fail(name, f"non-finite number {value!r}")
            return None
        return float(value)

    def integer(self, value: Any, name: str) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(name, f"expected an integer, got {value!r}")
            return None
        return value

    def matrix(self, name: str) -> list[Any] | None:
        value = self.row[name]
        if not isinstance(value, list) or not all(isinstance(r, list) for r in value):
            self.fail(name, "expected a list of lists")
            return None
        return value


def _check_common(c: _RowChecker) -> tuple[int | str, str, float, str] | None:
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


def _check_windows(c: _RowChecker, duration: float) -> list[list[float]] | None:
    windows = c.matrix("relevant_windows")
    if windows is None:
        return None
    if not windows:
        c.fail("relevant_windows", "empty list (a labelled query needs at least one window)")
        return None
    out = []
    for k, window in enumerate(windows):
        where = f"relevant_windows[{k}]"
        if len(window) != 2:
            c.fail(where, f"expected [start, end], got {window!r}")
            continue
        st, ed = c.number(window[0], where), c.number(window[1], where)
        if st is None or ed is None:
            continue
        if st > ed:
            c.fail(where, f"start {st:g} > end {ed:g}")
        elif st == ed:
            c.fail(where, f"zero-length window [{st:g}, {ed:g}]")
        elif st < 0 or ed > duration + WINDOW_TOLERANCE_S:
            c.fail(where, f"window [{st:g}, {ed:g}] outside [0, duration={duration:g}]")
        out.append([st, ed])
    return out if c.ok else None


def _check_qvh_saliency(c: _RowChecker, windows: list[list[float]]) -> tuple[list[int], list[list[int]]] | None:
    if not (c.require("relevant_clip_ids") and c.require("saliency_scores")):
        return None
    clip_ids, scores = c.row["relevant_clip_ids"], c.matrix("saliency_scores")
    if not isinstance(clip_ids, list) or any(isinstance(i, bool) or not isinstance(i, int) for i in clip_ids):
        c.fail("relevant_clip_ids", "expected a list of integers")
        return None
    if scores is None:
        return None
    if len(set(clip_ids)) != len(clip_ids):
        c.fail("relevant_clip_ids", "duplicate clip ids")
    expected: set[int] = set()
    for st, ed in windows:
        expected.update(range(math.floor(st / QVH_CLIP_LENGTH), math.ceil(ed / QVH_CLIP_LENGTH)))
    if set(clip_ids) != expected:
        extra, missing = sorted(set(clip_ids) - expected), sorted(expected - set(clip_ids))
        c.fail("relevant_clip_ids", f"not the 2-s clips of relevant_windows (extra {extra[:5]}, missing {missing[:5]})")
    if len(scores) != len(clip_ids):
        c.fail("saliency_scores", f"{len(scores)} rows for {len(clip_ids)} relevant_clip_ids")
    lo, hi = QVH_SCORE_RANGE
    for k, row in enumerate(scores):
        if len(row) != QVH_ANNOTATORS or any(isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi for v in row):
            c.fail(f"saliency_scores[{k}]", f"expected {QVH_ANNOTATORS} integers in {lo}..{hi}, got {row!r}")
            break
    return (clip_ids, scores) if c.ok else None


def _check_label(c: _RowChecker, dataset: str, duration: float) -> list[list[float]] | None:
    if not c.require("label"):
        return None
    label = c.matrix("label")
    if label is None:
        return None
    if not label:
        c.fail("label", "empty label matrix")
        return None
    width = TVSUM_ANNOTATORS if dataset == "tvsum" else 1
    for k, row in enumerate(label):
        if len(row) != width:
            c.fail(f"label[{k}]", f"expected {width} value(s) per clip, got {len(row)}")
            return None
        for v in row:
            if c.number(v, f"label[{k}]") is None:
                return None
            if dataset == "tvsum" and not TVSUM_SCORE_RANGE[0] <= v <= TVSUM_SCORE_RANGE[1]:
                c.fail(f"label[{k}]", f"score {v!r} outside {TVSUM_SCORE_RANGE[0]}..{TVSUM_SCORE_RANGE[1]}")
                return None
            if dataset == "youtube_highlights" and v not in (0, 1):
                c.fail(f"label[{k}]", f"expected 0 or 1, got {v!r}")
                return None
    if dataset == "tvsum" and len(label) != duration:
        # TVSum's `duration` is the number of 2-s clips, one label row each.
        c.fail("label", f"{len(label)} rows but duration (number of clips) is {duration:g}")
    if dataset == "youtube_highlights":
        clips = c.row.get("clip")
        if isinstance(clips, list) and len(clips) != len(label):
            c.fail("label", f"{len(label)} rows for {len(clips)} entries of 'clip'")
        elif len(label) > math.ceil(duration) + 1:
            # YouTube Highlights labels clips with a stride of at least one second.
            c.fail("label", f"{len(label)} clips is more than one per second of duration {duration:g}")
    domain = c.row.get("domain")
    if domain is not None and not isinstance(domain, str):
        c.fail("domain", f"expected a string, got {domain!r}")
    return label if c.ok else None


def _parse_row(path: str, line: int, row: dict[str, Any], dataset: str, errors: list[MasraError]) -> AnnotationRecord | None:
    c = _RowChecker(path, line, row, errors)
    common = _check_common(c)
    if common is None:
        return None
    qid, query, duration, vid = common
    record = AnnotationRecord(
        qid=qid, query=query, duration=duration, vid=vid, dataset=dataset, file=path, line=line,
        domain=row.get("domain") if isinstance(row.get("domain"), str) else None,
    )
    if dataset in SALIENCY_ONLY_DATASETS:
        record.label = _check_label(c, dataset, duration)
    elif row.get("relevant_windows") is not None:
        record.relevant_windows = _check_windows(c, duration)
        if dataset == "qvhighlights" and record.relevant_windows is not None:
            saliency = _check_qvh_saliency(c, record.relevant_windows)
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
