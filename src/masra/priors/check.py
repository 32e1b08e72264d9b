"""Coverage report for priors: how much of an annotation set the priors cover, and how good they look.

Works on a prior cache (``priors.jsonl``: statuses and parse failures are known there) or on a folder of
encoded ``{vid}.npz`` files. Reports: videos of the annotations with priors, clips with captions, events
per video, a histogram of event span lengths, statuses and the parse-failure rate of the MLLM replies
(re-parsed from the raw replies the cache keeps). Only unreadable input is an error; everything else is
reported.
"""

from __future__ import annotations

import json
import math
import statistics
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from masra.data.jsonl import write_json
from masra.errors import MasraError

# Upper edges (seconds) of the span-length histogram bins; the last bin is open.
SPAN_BIN_EDGES = (2.0, 5.0, 10.0, 20.0, 40.0, 80.0, 150.0)
EXAMPLES = 5  # how many missing vids / unreadable files the report names


@dataclass
class PriorReport:
    source: str
    kind: str  # "cache" | "folder"
    annotations: str | None
    annotated_videos: int | None  # distinct vids in the annotations (None without annotations)
    videos_with_priors: int  # among the annotated vids (all vids without annotations)
    missing: list[str]  # a few annotated vids without priors
    extra_videos: int  # vids with priors that the annotations do not mention
    clips: int
    clips_with_caption: int
    events_per_video: dict[str, float]  # mean, median, min, max over videos with priors
    videos_without_events: int
    span_histogram: dict[str, int]  # "0-2 s" -> number of events
    statuses: dict[str, int] | None = None  # cache only
    replies: int | None = None  # cache only: MLLM replies kept in the cache
    unparsed_replies: int | None = None  # cache only: replies from which nothing could be parsed
    videos_with_errors: int | None = None  # cache only
    encoder: dict[str, Any] | None = None  # folder only: its manifest
    unreadable: list[str] = field(default_factory=list)  # folder only: prior files that could not be read

    @property
    def coverage(self) -> float | None:
        return None if not self.annotated_videos else self.videos_with_priors / self.annotated_videos

    @property
    def caption_coverage(self) -> float | None:
        return None if not self.clips else self.clips_with_caption / self.clips

    @property
    def parse_failure_rate(self) -> float | None:
        return None if not self.replies else (self.unparsed_replies or 0) / self.replies

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            coverage=self.coverage, caption_coverage=self.caption_coverage, parse_failure_rate=self.parse_failure_rate
        )
        return out

    def render(self, console: Any = None) -> None:
        """Print the report as rich tables (to ``console``, default stdout)."""
        from rich.console import Console

        console = console or Console()
        for table in _tables(self):
            console.print(table)

    def __str__(self) -> str:
        import io

        from rich.console import Console

        buffer = io.StringIO()
        self.render(Console(file=buffer, width=100, force_terminal=False, no_color=True))
        return buffer.getvalue().rstrip()


def _percent(part: int, whole: int | None) -> str:
    return f"{part} / {whole} ({100 * part / whole:.1f}%)" if whole else f"{part}"


def _tables(report: PriorReport) -> list[Any]:
    from rich.table import Table

    summary = Table(title=f"priors: {report.source} ({report.kind})", show_header=False)
    summary.add_column("what", style="bold")
    summary.add_column("value")
    if report.annotations is not None:
        summary.add_row("annotations", report.annotations)
        summary.add_row("videos with priors", _percent(report.videos_with_priors, report.annotated_videos))
        if report.missing:
            summary.add_row("e.g. missing", ", ".join(report.missing))
        summary.add_row("priors for other videos", str(report.extra_videos))
    else:
        summary.add_row("videos with priors", str(report.videos_with_priors))
    summary.add_row("clips with a caption", _percent(report.clips_with_caption, report.clips))
    stats = report.events_per_video
    if stats:
        summary.add_row(
            "events per video",
            f"mean {stats['mean']:.2f}, median {stats['median']:g}, min {stats['min']:g}, max {stats['max']:g}",
        )
    summary.add_row("videos without events", str(report.videos_without_events))
    if report.statuses is not None:
        summary.add_row("statuses", ", ".join(f"{k} {v}" for k, v in report.statuses.items()))
        summary.add_row("videos with errors", str(report.videos_with_errors))
    if report.replies is not None:
        rate = report.parse_failure_rate
        summary.add_row(
            "unparsed replies",
            f"{report.unparsed_replies} / {report.replies}" + ("" if rate is None else f" ({100 * rate:.1f}%)"),
        )
    if report.encoder is not None:
        summary.add_row("encoder", f"{report.encoder.get('encoder')} ({report.encoder.get('dim')}-d)")
    if report.unreadable:
        summary.add_row("unreadable files", f"{len(report.unreadable)}: " + ", ".join(report.unreadable[:EXAMPLES]))

    spans = Table(title="event span lengths")
    spans.add_column("seconds")
    spans.add_column("events", justify="right")
    total = sum(report.span_histogram.values())
    for label, count in report.span_histogram.items():
        spans.add_row(label, _percent(count, total))
    return [summary, spans]


@dataclass
class _VideoStats:
    clips: int
    captioned: int
    span_lengths: list[float]


def _span_histogram(lengths: list[float]) -> dict[str, int]:
    labels = [f"{lo:g}-{hi:g}" for lo, hi in zip((0.0, *SPAN_BIN_EDGES), SPAN_BIN_EDGES)] + [
        f">={SPAN_BIN_EDGES[-1]:g}"
    ]
    counts = np.bincount(np.searchsorted(SPAN_BIN_EDGES, lengths, side="right"), minlength=len(labels))
    return dict(zip(labels, (int(c) for c in counts)))


def _annotated_vids(path: str | Path) -> list[str]:
    from masra.data.annotations import load_annotations

    return list(dict.fromkeys(record.vid for record in load_annotations(path)))


def caption_batch_sizes(n_clips: int, n_requests: int) -> list[int]:
    """Clip frames per caption request, reconstructed from the record (the batch size is not stored):
    equal batches of ceil(n_clips / n_requests), the last one takes the rest. Exact for one request and
    for the usual case of full batches plus a shorter last one."""
    if n_requests <= 0:
        return []
    size = max(1, math.ceil(n_clips / n_requests))
    sizes = [size] * (n_requests - 1)
    return [*sizes, max(1, n_clips - sum(sizes))]


def _cache_stats(path: Path, vids: set[str] | None) -> tuple[dict[str, _VideoStats], dict[str, Any]]:
    from masra.priors.cache import STATUSES, read_cache
    from masra.priors.parsing import parse_captions, parse_events

    if not path.is_file():
        raise MasraError("prior cache not found", file=path)
    per_video: dict[str, _VideoStats] = {}
    statuses = dict.fromkeys(STATUSES, 0)
    replies = unparsed = with_errors = 0
    for vid, record in read_cache(path).items():
        if vids is not None and vid not in vids:
            per_video[vid] = _VideoStats(0, 0, [])  # counted as extra only
            continue
        captions = record["captions"]
        per_video[vid] = _VideoStats(
            clips=len(captions),
            captioned=sum(isinstance(c, str) and bool(c.strip()) for c in captions),
            span_lengths=[abs(float(e["end"]) - float(e["start"])) for e in record["events"]],
        )
        statuses[record["status"]] += 1
        with_errors += bool(record.get("errors"))
        raw = record.get("raw") or {}
        caption_replies = raw.get("captions") or []
        for text, expected in zip(caption_replies, caption_batch_sizes(len(captions), len(caption_replies))):
            if isinstance(text, str):
                replies += 1
                unparsed += parse_captions(text, expected).error is not None
        if isinstance(raw.get("events"), str):
            replies += 1
            unparsed += parse_events(raw["events"], float(record["duration"])).error is not None
    extra = {"statuses": statuses, "replies": replies, "unparsed_replies": unparsed, "videos_with_errors": with_errors}
    return per_video, extra


def _folder_stats(folder: Path, vids: set[str] | None) -> tuple[dict[str, _VideoStats], dict[str, Any]]:
    if not folder.is_dir():
        raise MasraError("prior folder not found", file=folder)
    manifest_path = folder / "manifest.json"
    encoder = None
    if manifest_path.is_file():
        try:
            encoder = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise MasraError(f"unreadable manifest ({err})", file=manifest_path) from None
    per_video: dict[str, _VideoStats] = {}
    unreadable: list[str] = []
    for path in sorted(folder.glob("*.npz")):
        vid = path.stem
        if vids is not None and vid not in vids:
            per_video[vid] = _VideoStats(0, 0, [])
            continue
        try:
            with np.load(path, allow_pickle=False) as npz:
                captions = npz["clip_caption_emb"]
                valid = npz["clip_caption_valid"] if "clip_caption_valid" in npz.files else None
                spans = npz["event_spans"]
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
            unreadable.append(path.name)
            continue
        if valid is None:
            valid = np.linalg.norm(captions, axis=-1) > 0
        per_video[vid] = _VideoStats(
            clips=int(captions.shape[0]),
            captioned=int(np.asarray(valid, dtype=bool).sum()),
            span_lengths=[float(v) for v in np.abs(spans[:, 1] - spans[:, 0])] if spans.ndim == 2 else [],
        )
    return per_video, {"encoder": encoder, "unreadable": unreadable}


def check_priors(
    *,
    priors: str | Path | None = None,
    prior_dir: str | Path | None = None,
    annotations: str | Path | None = None,
    json_out: str | Path | None = None,
) -> PriorReport:
    """Build the coverage report of a prior cache (``priors``) or an encoded prior folder (``prior_dir``;
    a folder given as ``priors`` is taken as one), against ``annotations`` when given. Writes the report
    as JSON to ``json_out`` when given. Raises MasraError only when an input cannot be read.
    """
    if (priors is None) == (prior_dir is None):
        raise MasraError("give either a prior cache or a prior folder", field="priors")
    source = Path(priors if priors is not None else prior_dir)
    kind = "folder" if prior_dir is not None or source.is_dir() else "cache"
    vids = _annotated_vids(annotations) if annotations is not None else None
    wanted = set(vids) if vids is not None else None
    per_video, extra = _folder_stats(source, wanted) if kind == "folder" else _cache_stats(source, wanted)

    covered = [vid for vid in (vids if vids is not None else per_video) if vid in per_video]
    stats = [per_video[vid] for vid in covered]
    event_counts = [len(s.span_lengths) for s in stats]
    report = PriorReport(
        source=str(source),
        kind=kind,
        annotations=None if annotations is None else str(annotations),
        annotated_videos=None if vids is None else len(vids),
        videos_with_priors=len(covered),
        missing=[] if vids is None else [vid for vid in vids if vid not in per_video][:EXAMPLES],
        extra_videos=0 if wanted is None else sum(vid not in wanted for vid in per_video),
        clips=sum(s.clips for s in stats),
        clips_with_caption=sum(s.captioned for s in stats),
        events_per_video=(
            {
                "mean": float(statistics.fmean(event_counts)),
                "median": float(statistics.median(event_counts)),
                "min": float(min(event_counts)),
                "max": float(max(event_counts)),
            }
            if event_counts
            else {}
        ),
        videos_without_events=sum(count == 0 for count in event_counts),
        span_histogram=_span_histogram([length for s in stats for length in s.span_lengths]),
        **extra,
    )
    if json_out is not None:
        write_json(json_out, report.as_dict())
    return report
