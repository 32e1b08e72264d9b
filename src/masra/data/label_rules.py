"""The rules of a row's labels (moment windows, QVHighlights saliency, TVSum / YouTube label matrices),
written once for the two readers of labelled rows.

Two levels, one set of rules:

- evaluation (``masra.eval``: a ground-truth file given to ``masra evaluate --gt``): what the scorers need,
  as the official evaluator accepts it;
- annotation (``masra.data.annotations``: the training / evaluation splits): every evaluation rule plus the
  rules of the file format (windows inside the video with a positive length, clip ids exactly the 2-s clips
  of the windows, integer scores in the dataset's range, label widths and row counts per dataset).

An annotation record therefore never needs the evaluation rules checked again: its ``to_meta()`` rows go to
the evaluator as they are. Each rule records a MasraError (file, line, field) in a :class:`RowChecker`.
"""

from __future__ import annotations

import math
from typing import Any

from masra.datasets import QVH_CLIP_LENGTH
from masra.errors import MasraError

# Windows may end this many seconds past ``duration`` (float rounding in the exported files); beyond that
# they are errors. Every shipped file checks clean with it (the largest overshoot in them is 0).
WINDOW_TOLERANCE_S = 0.01
# QVHighlights annotations are on a fixed 2-s clip grid (relevant_clip_ids, saliency_scores).
QVH_ANNOTATORS = 3
QVH_SCORE_RANGE = (0, 4)
TVSUM_ANNOTATORS = 20
TVSUM_SCORE_RANGE = (1, 5)


class RowChecker:
    """Validates one row; every problem is recorded as a MasraError (file, line, field) in ``errors``."""

    def __init__(self, path: str, line: int, row: dict[str, Any], errors: list[MasraError]) -> None:
        self.path, self.line, self.row, self.errors = path, line, row, errors
        self.n_before = len(errors)

    @property
    def ok(self) -> bool:
        return len(self.errors) == self.n_before

    def fail(self, field_name: str | None, message: str) -> None:
        self.errors.append(MasraError(message, file=self.path, line=self.line, field=field_name))

    def raise_first(self) -> None:
        """Raise the first problem of this row, if any (for readers that stop at the first error)."""
        if not self.ok:
            raise self.errors[self.n_before]

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

    def matrix(self, name: str) -> list[Any] | None:
        value = self.row[name]
        if not isinstance(value, list) or not all(isinstance(r, list) for r in value):
            self.fail(name, "expected a list of lists")
            return None
        return value


def check_windows(c: RowChecker, duration: float | None = None) -> list[list[float]] | None:
    """``relevant_windows``: a non-empty list of [start, end] finite numbers, start <= end. With the video's
    ``duration`` (annotation level) every window also has a positive length and lies in [0, duration]."""
    if not c.require("relevant_windows"):
        return None
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
        elif duration is not None and st == ed:
            c.fail(where, f"zero-length window [{st:g}, {ed:g}]")
        elif duration is not None and (st < 0 or ed > duration + WINDOW_TOLERANCE_S):
            c.fail(where, f"window [{st:g}, {ed:g}] outside [0, duration={duration:g}]")
        out.append([st, ed])
    return out if c.ok else None


def _integers(values: list[Any]) -> bool:
    return not any(isinstance(v, bool) or not isinstance(v, int) for v in values)


def _finite_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def check_qvh_saliency(
    c: RowChecker, windows: list[list[float]] | None = None
) -> tuple[list[int], list[list[int]]] | None:
    """QVHighlights saliency: ``duration`` of at least one 2-s clip, ``relevant_clip_ids`` integers inside the
    video's int(duration / 2) clips, ``saliency_scores`` one row of 3 annotator scores (finite numbers) per
    id. With the row's ``windows`` (annotation level) the ids are exactly the distinct 2-s clips of the
    windows and the scores integers in 0..4."""
    if not (c.require("duration") and c.require("relevant_clip_ids") and c.require("saliency_scores")):
        return None
    duration = c.number(c.row["duration"], "duration")
    if duration is None:
        return None
    if duration < QVH_CLIP_LENGTH:
        c.fail("duration", f"must be at least one {QVH_CLIP_LENGTH:g}-s clip, got {duration:g}")
        return None
    clip_ids, scores = c.row["relevant_clip_ids"], c.matrix("saliency_scores")
    if not isinstance(clip_ids, list) or not _integers(clip_ids):
        c.fail("relevant_clip_ids", "expected a list of integers")
        return None
    if scores is None:
        return None
    num_clips = int(duration / QVH_CLIP_LENGTH)
    if clip_ids and not 0 <= min(clip_ids) <= max(clip_ids) < num_clips:
        c.fail("relevant_clip_ids", f"clip ids must lie in [0, {num_clips}) for duration {duration:g}")
    if windows is not None:
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
    if windows is None:
        want, score_ok = f"{QVH_ANNOTATORS} finite numbers", _finite_number
    else:
        want, score_ok = f"{QVH_ANNOTATORS} integers in {lo}..{hi}", lambda v: _integers([v]) and lo <= v <= hi
    for k, row in enumerate(scores):
        if len(row) != QVH_ANNOTATORS or not all(map(score_ok, row)):
            c.fail(f"saliency_scores[{k}]", f"expected {want}, got {row!r}")
            break
    return (clip_ids, scores) if c.ok else None


def check_label(c: RowChecker, dataset: str | None = None, duration: float | None = None) -> list[list[float]] | None:
    """TVSum / YouTube Highlights: a string ``domain`` (the evaluation averages per domain) and ``label``, a
    non-empty [n_clips, n_annotators] matrix of finite numbers. With the ``dataset`` and the row's ``duration``
    (annotation level): 20 scores in 1..5 per clip and one row per 2-s clip (TVSum's duration counts clips), or
    one 0/1 per clip and at most one clip per second (YouTube Highlights)."""
    domain = c.row.get("domain")
    if not isinstance(domain, str):
        c.fail("domain", f"expected a string, got {domain!r}")
    if not c.require("label"):
        return None
    label = c.matrix("label")
    if label is None:
        return None
    if not label:
        c.fail("label", "empty label matrix")
        return None
    width = len(label[0]) if dataset is None else TVSUM_ANNOTATORS if dataset == "tvsum" else 1
    for k, row in enumerate(label):
        if len(row) != width or not row:
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
    if dataset == "tvsum" and duration is not None and len(label) != duration:
        # TVSum's `duration` is the number of 2-s clips, one label row each.
        c.fail("label", f"{len(label)} rows but duration (number of clips) is {duration:g}")
    if dataset == "youtube_highlights" and duration is not None:
        clips = c.row.get("clip")
        if isinstance(clips, list) and len(clips) != len(label):
            c.fail("label", f"{len(label)} rows for {len(clips)} entries of 'clip'")
        elif len(label) > math.ceil(duration) + 1:
            # YouTube Highlights labels clips with a stride of at least one second.
            c.fail("label", f"{len(label)} clips is more than one per second of duration {duration:g}")
    return label if c.ok else None
