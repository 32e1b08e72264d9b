"""Coverage report for priors: how much of an annotation set the priors cover, and how good they look.

Works on a prior cache (``priors.jsonl``: statuses and request outcomes are known there) or on a folder
of encoded ``{vid}.npz`` files. Reports: videos of the annotations with priors, clips with captions, events
per video, a histogram of event span lengths, statuses, what became of the MLLM requests (from the
per-request entries of each record; records written before those existed have their raw replies parsed
again) and a torn last line. Only unreadable input is an error; everything else is reported.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from masra.data.jsonl import write_json
from masra.data.prior_file import read_prior_file
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
    replies: int | None = None  # cache only: requests that got a reply
    unparsed_replies: int | None = None  # cache only: final replies from which nothing could be parsed
    videos_with_errors: int | None = None  # cache only
    requests: int | None = None  # cache only: caption and events requests of the records
    request_statuses: dict[str, int] | None = None  # cache only: ok, miscounted, unparsed, no_reply
    reasked_requests: int | None = None  # cache only: caption requests asked more than once
    attempts: int | None = None  # cache only: HTTP requests sent, retries and re-asks included
    legacy_records: int | None = None  # cache only: records without request entries (replies re-parsed)
    torn_bytes: int | None = None  # cache only: size of a torn last line (0: none)
    encoder: dict[str, Any] | None = None  # folder only: its manifest
    unreadable: list[str] = field(default_factory=list)  # folder only: prior files that cannot be read or are invalid

    @property
    def coverage(self) -> float | None:
        return None if not self.annotated_videos else self.videos_with_priors / self.annotated_videos

    @property
    def caption_coverage(self) -> float | None:
        return None if not self.clips else self.clips_with_caption / self.clips

    @property
    def parse_failure_rate(self) -> float | None:
        return None if not self.replies else (self.unparsed_replies or 0) / self.replies

    @property
    def request_failure_rate(self) -> float | None:
        """Share of requests that did not end ok (no reply, unparsed or miscounted)."""
        if not self.requests or self.request_statuses is None:
            return None
        return 1.0 - self.request_statuses["ok"] / self.requests

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            coverage=self.coverage,
            caption_coverage=self.caption_coverage,
            parse_failure_rate=self.parse_failure_rate,
            request_failure_rate=self.request_failure_rate,
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
    if report.request_statuses is not None:
        outcomes = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in report.request_statuses.items())
        rate = report.request_failure_rate
        summary.add_row(
            "requests", f"{report.requests} ({outcomes})" + ("" if rate is None else f", {100 * rate:.1f}% not ok")
        )
        summary.add_row(
            "unparsed replies", _percent(report.unparsed_replies or 0, report.replies)
        )
        summary.add_row("re-asked requests", str(report.reasked_requests))
        summary.add_row("HTTP attempts", str(report.attempts))
        if report.legacy_records:
            summary.add_row("records without request entries", f"{report.legacy_records} (replies parsed again)")
    if report.torn_bytes:
        summary.add_row(
            "torn last line", f"{report.torn_bytes} bytes, ignored (the next `priors generate` cuts it off)"
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
    """Clip frames per caption request of a record without request entries (the batch size is not
    stored): equal batches of ceil(n_clips / n_requests), the last one takes the rest. Exact for one
    request and for the usual case of full batches plus a shorter last one."""
    if n_requests <= 0:
        return []
    size = max(1, math.ceil(n_clips / n_requests))
    sizes = [size] * (n_requests - 1)
    return [*sizes, max(1, n_clips - sum(sizes))]


def _legacy_request_statuses(record: dict[str, Any]) -> list[str]:
    """Request outcomes of a record written without request entries, from its raw replies parsed again."""
    from masra.priors.parsing import parse_captions, parse_events

    raw = record.get("raw", {})
    replies = raw.get("captions", [])
    statuses = []
    for text, expected in zip(replies, caption_batch_sizes(len(record["captions"]), len(replies))):
        parsed = None if text is None else parse_captions(text, expected)
        statuses.append(
            "no_reply" if parsed is None else "unparsed" if parsed.error else "ok" if parsed.complete else "miscounted"
        )
    if raw.get("events") is not None:
        statuses.append("unparsed" if parse_events(raw["events"], float(record["duration"])).error else "ok")
    return statuses


def _cache_stats(path: Path, vids: set[str] | None) -> tuple[dict[str, _VideoStats], dict[str, Any]]:
    from masra.priors.cache import REQUEST_STATUSES, STATUSES, scan_cache

    if not path.is_file():
        raise MasraError("prior cache not found", file=path)
    contents = scan_cache(path)
    per_video: dict[str, _VideoStats] = {}
    statuses = dict.fromkeys(STATUSES, 0)
    outcomes = dict.fromkeys(REQUEST_STATUSES, 0)
    with_errors = reasked = attempts = legacy = 0
    for vid, record in contents.records.items():
        if vids is not None and vid not in vids:
            per_video[vid] = _VideoStats(0, 0, [])  # counted as extra only
            continue
        captions = record["captions"]
        per_video[vid] = _VideoStats(
            clips=len(captions),
            captioned=sum(c is not None and bool(c.strip()) for c in captions),
            span_lengths=[abs(float(e["end"]) - float(e["start"])) for e in record["events"]],
        )
        statuses[record["status"]] += 1
        with_errors += bool(record.get("errors"))
        if "requests" in record:
            entries = record["requests"]
            for entry in entries:
                outcomes[entry["status"]] += 1
            reasked += sum(entry["asks"] > 1 for entry in entries)
            attempts += sum(entry["attempts"] for entry in entries)
        else:
            legacy += 1
            for status in _legacy_request_statuses(record):
                outcomes[status] += 1
    extra = {
        "statuses": statuses,
        "videos_with_errors": with_errors,
        "requests": sum(outcomes.values()),
        "request_statuses": outcomes,
        "replies": sum(outcomes.values()) - outcomes["no_reply"],
        "unparsed_replies": outcomes["unparsed"],
        "reasked_requests": reasked,
        "attempts": attempts,
        "legacy_records": legacy,
        "torn_bytes": contents.torn_bytes,
    }
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
            prior = read_prior_file(path)
        except MasraError:
            unreadable.append(path.name)
            continue
        per_video[vid] = _VideoStats(
            clips=int(prior.caption_emb.shape[0]),
            captioned=int(prior.caption_valid.sum()),
            span_lengths=[float(v) for v in prior.event_spans[:, 1] - prior.event_spans[:, 0]],
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
    as JSON to ``json_out`` when given (replacing only an earlier report). Raises MasraError only when an
    input cannot be read or ``json_out`` holds something other than a report.
    """
    if json_out is not None:
        _check_report_target(Path(json_out))
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


REPORT_KEYS = {"source", "kind", "span_histogram"}  # keys every report has


def _check_report_target(path: Path) -> None:
    """Refuse to replace a file that is not an earlier report of this command."""
    if not path.exists():
        return
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        earlier = None
    if not (isinstance(earlier, dict) and REPORT_KEYS <= earlier.keys()):
        raise MasraError("exists and is not a report of `priors check`; refusing to replace it", file=path)

