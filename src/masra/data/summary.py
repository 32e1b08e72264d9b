"""Statistics of an annotation file, as printed by ``masra data check``."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from masra.data.annotations import AnnotationRecord

DURATION_BIN_EDGES = (0, 30, 60, 120, 150, 300, 600, 1200)


@dataclass
class Stats:
    """min / mean / median / max of a list of numbers (all 0 for an empty list)."""

    count: int
    min: float
    mean: float
    median: float
    max: float

    @classmethod
    def of(cls, values: list[float]) -> "Stats":
        if not values:
            return cls(0, 0.0, 0.0, 0.0, 0.0)
        arr = np.asarray(values, dtype=np.float64)
        return cls(len(values), float(arr.min()), float(arr.mean()), float(np.median(arr)), float(arr.max()))


@dataclass
class Summary:
    dataset: str
    rows: int
    videos: int
    labelled: int  # rows that carry training targets
    queries_per_video: Stats
    windows_per_query: dict[int, int]  # number of windows -> number of queries
    window_length_s: Stats
    duration_s: Stats
    duration_histogram: dict[str, int]  # "lo-hi" seconds -> number of rows
    label_clips: Stats  # TVSum / YouTube: label rows per video
    domains: dict[str, int] = field(default_factory=dict)


def _duration_bin(duration: float) -> str:
    edges = DURATION_BIN_EDGES
    for lo, hi in zip(edges[:-1], edges[1:]):
        if duration <= hi:
            return f"{lo}-{hi}"
    return f">{edges[-1]}"


def summarize(records: list[AnnotationRecord]) -> Summary:
    """Counts and distributions of a list of records (one file or several of the same dataset)."""
    per_video = Counter(r.vid for r in records)
    windows_per_query = Counter(len(r.relevant_windows) for r in records if r.relevant_windows is not None)
    lengths = [ed - st for r in records for st, ed in (r.relevant_windows or [])]
    durations = [r.duration for r in records]
    histogram = Counter(_duration_bin(d) for d in durations)
    ordered_bins = [f"{lo}-{hi}" for lo, hi in zip(DURATION_BIN_EDGES[:-1], DURATION_BIN_EDGES[1:])]
    ordered_bins.append(f">{DURATION_BIN_EDGES[-1]}")
    return Summary(
        dataset=records[0].dataset if records else "unknown",
        rows=len(records),
        videos=len(per_video),
        labelled=sum(r.has_labels for r in records),
        queries_per_video=Stats.of([float(n) for n in per_video.values()]),
        windows_per_query=dict(sorted(windows_per_query.items())),
        window_length_s=Stats.of(lengths),
        duration_s=Stats.of(durations),
        duration_histogram={b: histogram[b] for b in ordered_bins if histogram[b]},
        label_clips=Stats.of([float(len(r.label)) for r in records if r.label is not None]),
        domains=dict(sorted(Counter(r.domain for r in records if r.domain).items())),
    )
