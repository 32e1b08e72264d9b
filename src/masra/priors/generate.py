"""The prior-generation scheduler: frames → requests → parsed record → cache, for many videos at once.

Concurrency model (asyncio): ``concurrency`` videos are worked on at a time and at most ``concurrency``
requests are in flight (a semaphore). Frame decoding runs in worker threads. Each request gets a timeout
and retries with exponential back-off and full jitter; a 429's Retry-After pauses every request, not only
the one that got it. A caption reply without one caption per frame is asked again (up to ``max_retries``
times) with the number of frames restated. A non-retryable error (bad key, unknown model, rejected
request) stops the run: videos already finished are on disk (each record is fsynced), the ones in flight
are redone next time. Every record lists its requests and what became of each (``requests``), so a
``partial`` video is later completed by asking only its unfinished requests again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from masra.errors import MasraError
from masra.priors.backends.base import DEFAULT_REQUEST_TIMEOUT, BackendError, ChatBackend
from masra.priors.cache import CacheWriter, read_cache
from masra.video.frames import (
    VideoDecodeError,
    clip_centres,
    event_times,
    grab_frames,
    jpeg_data_url,
    resize_short_side,
)
from masra.priors.outcomes import (
    EarlierRecord,
    RequestOutcome,
    better,
    caption_batches,
    earlier_outcomes,
    empty_record,
    finish_record,
    new_entry,
    resumable,
)
from masra.priors.parsing import parse_captions, parse_events
from masra.priors.prompts import PROMPT_VERSION, caption_messages, event_messages
from masra.priors.videos import VideoJob
from masra.video.limits import check_clip_length

log = logging.getLogger(__name__)


@dataclass
class GenerateOptions:
    clip_length: float = 2.0
    caption_batch: int = 8  # clip frames per caption request
    event_interval: float = 2.0  # seconds between event frames
    event_frames: int = 64  # most event frames per video
    caption_short_side: int = 336
    event_short_side: int = 224
    jpeg_quality: int = 85
    temperature: float = 0.0
    max_tokens: int = 1024
    concurrency: int = 8
    request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT
    max_retries: int = 5  # per request; also the most re-asks of a miscounted caption reply
    backoff_base: float = 1.0  # first back-off ceiling (seconds); doubles per attempt
    backoff_cap: float = 60.0
    retry_after_cap: float = 600.0
    decode_threads: int = 2
    show_progress: bool = True

    def __post_init__(self) -> None:
        check_clip_length(self.clip_length)
        limits = {
            "caption_batch": self.caption_batch >= 1,
            "event_interval": self.event_interval > 0,
            "event_frames": 1 <= self.event_frames <= 64,
            "concurrency": self.concurrency >= 1,
            "max_retries": self.max_retries >= 0,
            "max_tokens": self.max_tokens >= 1,
            "caption_short_side": self.caption_short_side >= 16,
            "event_short_side": self.event_short_side >= 16,
            "decode_threads": self.decode_threads >= 1,
        }
        for name, ok in limits.items():
            if not ok:
                raise MasraError(f"invalid value {getattr(self, name)!r}", field=name)


@dataclass
class GenerateSummary:
    videos: int = 0  # videos this run worked on
    skipped: int = 0  # already ok in the cache
    ok: int = 0
    partial: int = 0
    failed: int = 0
    requests: int = 0
    retries: int = 0
    failed_requests: int = 0
    unparsed_replies: int = 0  # replies nothing could be read from (re-asks included)
    caption_count_mismatches: int = 0  # caption replies without one caption per frame (re-asks included)
    reasks: int = 0  # caption requests asked again with the count restated
    resumed: int = 0  # partial videos completed: only their unfinished requests were asked again
    kept_requests: int = 0  # finished requests of those videos whose replies were kept
    events_dropped: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    stopped: str | None = None  # why the run stopped early
    seconds: float = 0.0

    def lines(self) -> list[str]:
        text = [
            f"videos: {self.videos} processed ({self.ok} ok, {self.partial} partial, {self.failed} failed), "
            f"{self.skipped} already done, {self.resumed} partial ones completed ({self.kept_requests} earlier "
            f"replies kept)",
            f"requests: {self.requests} ({self.retries} retries, {self.failed_requests} gave up), "
            f"{self.unparsed_replies} unparsed replies, {self.caption_count_mismatches} caption-count mismatches, "
            f"{self.reasks} re-asks, {self.events_dropped} events dropped",
        ]
        if self.prompt_tokens or self.completion_tokens:
            text.append(f"tokens: {self.prompt_tokens} prompt, {self.completion_tokens} completion")
        text.append(f"time: {self.seconds:.1f} s")
        if self.stopped:
            text.append(f"stopped early: {self.stopped}")
        return text


class FatalBackendError(Exception):
    """A non-retryable backend error: the whole run stops."""


def shard_of(vid: str, num_shards: int) -> int:
    """The shard (0..num_shards-1) a vid belongs to: a hash of its name, stable across machines/runs."""
    return int.from_bytes(hashlib.sha256(vid.encode("utf-8")).digest()[:8], "big") % num_shards


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` → (i, n) with 0 <= i < n."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise MasraError(f"expected i/n (e.g. 0/4), got {text!r}", field="shard") from None
    if count < 1 or not 0 <= index < count:
        raise MasraError(f"need 0 <= i < n, got {text!r}", field="shard")
    return index, count


@dataclass
class _Frames:
    captions: dict[int, str]  # clip index -> data URL, for the clips to ask about whose frame could be read
    events: list[tuple[float, str]]  # (segment time, data URL)


@dataclass
class _Reply:
    text: str | None
    attempts: int  # HTTP requests sent, retries included
    error: str | None = None


@dataclass
class _Run:
    backend: ChatBackend
    options: GenerateOptions
    summary: GenerateSummary
    request_slots: asyncio.Semaphore
    decode_slots: asyncio.Semaphore
    paused_until: float = 0.0
    rng: random.Random = field(default_factory=random.Random)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.options.retry_after_cap)
        ceiling = min(self.options.backoff_cap, self.options.backoff_base * 2**attempt)
        return self.rng.uniform(0.0, ceiling)

    async def request(self, messages: list[dict[str, Any]]) -> _Reply:
        """One chat request with timeout and retries; a non-retryable error raises FatalBackendError."""
        options = self.options
        attempt = 0
        while True:
            async with self.request_slots:
                wait = self.paused_until - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                self.summary.requests += 1
                try:
                    async with asyncio.timeout(options.request_timeout):
                        text = await self.backend.chat(
                            messages, max_tokens=options.max_tokens, temperature=options.temperature
                        )
                    return _Reply(text, attempt + 1)
                except TimeoutError:
                    error = BackendError(f"no reply within {options.request_timeout} s", retryable=True)
                except BackendError as err:
                    error = err
            if not error.retryable:
                raise FatalBackendError(str(error))
            if attempt == options.max_retries:
                self.summary.failed_requests += 1
                return _Reply(None, attempt + 1, f"gave up after {attempt + 1} attempts: {error}")
            delay = self._backoff(attempt, error.retry_after)
            if error.retry_after is not None:
                self.paused_until = max(self.paused_until, time.monotonic() + delay)
            log.debug("retry %d in %.2f s after: %s", attempt + 1, delay, error)
            self.summary.retries += 1
            attempt += 1
            await asyncio.sleep(delay)

    async def ask_captions(self, clips: list[int], urls: list[str]) -> RequestOutcome:
        """Caption the frames of ``clips``. A reply without one caption per frame is asked again, with the
        number of frames restated, up to ``max_retries`` times; the last readable reply is kept."""
        entry = new_entry("captions", clips=clips, attempts=0, asks=0)
        outcome = RequestOutcome(entry, None, captions=[None] * len(clips))
        recount: int | None = None
        while True:
            reply = await self.request(caption_messages(urls, recount=recount))
            entry["attempts"] += reply.attempts
            entry["asks"] += 1
            if reply.text is None:  # keep what an earlier ask gave, if anything
                first = entry["status"] == "no_reply"
                entry["error"] = reply.error if first else f"{entry['error']}; re-ask: {reply.error}"
                return outcome
            parsed = parse_captions(reply.text, len(clips))
            outcome.reply, outcome.captions = reply.text, parsed.captions
            if parsed.complete:
                entry.update(status="ok", error=None)
                return outcome
            self.summary.unparsed_replies += parsed.error is not None
            self.summary.caption_count_mismatches += parsed.error is None
            entry["status"] = "unparsed" if parsed.error else "miscounted"
            entry["error"] = parsed.error or f"expected {len(clips)} captions, got {parsed.found} usable"
            if entry["asks"] > self.options.max_retries:
                entry["error"] += f" (asked {entry['asks']} times)"
                return outcome
            self.summary.reasks += 1
            recount = parsed.found

    async def ask_events(self, frames: list[tuple[float, str]], duration: float) -> RequestOutcome:
        """The video's events from one request (retried on transport errors, not re-asked)."""
        reply = await self.request(event_messages(frames, duration))
        entry = new_entry("events", attempts=reply.attempts, asks=1, error=reply.error)
        outcome = RequestOutcome(entry, reply.text)
        if reply.text is None:
            return outcome
        parsed = parse_events(reply.text, duration)
        self.summary.events_dropped += parsed.dropped
        if parsed.error:
            self.summary.unparsed_replies += 1
            entry.update(status="unparsed", error=parsed.error)
        else:
            entry.update(status="ok", error=None)
            outcome.events = parsed.events
        return outcome

    def _extract_frames(self, job: VideoJob, clips: list[int], with_events: bool) -> _Frames:
        options = self.options
        centres = clip_centres(job.duration, options.clip_length)
        caption_times = [centres[i] for i in clips]
        event_at = (
            event_times(job.duration, interval=options.event_interval, max_frames=options.event_frames)
            if with_events
            else []
        )
        wanted = sorted(set(caption_times) | set(event_at))
        images = grab_frames(
            job.path,
            [job.offset + t for t in wanted],
            short_side=max(options.caption_short_side, options.event_short_side),
            tail_tolerance=max(options.clip_length, options.event_interval),
        )
        by_time = dict(zip(wanted, images))

        def url(t: float, side: int) -> str | None:
            image = by_time[t]
            return None if image is None else jpeg_data_url(resize_short_side(image, side), quality=options.jpeg_quality)

        events = [(t, u) for t in event_at if (u := url(t, options.event_short_side)) is not None]
        captions = {i: u for i, t in zip(clips, caption_times) if (u := url(t, options.caption_short_side)) is not None}
        return _Frames(captions, events)

    async def process(self, job: VideoJob, earlier: dict[str, Any] | None = None) -> dict[str, Any]:
        """The cache record for one video. ``earlier`` is the video's cached record: when ``resumable``,
        only its unfinished requests (and clips no request covered) are asked again."""
        n_clips = len(clip_centres(job.duration, self.options.clip_length))
        record = empty_record(
            job.vid,
            duration=job.duration,
            clip_length=self.options.clip_length,
            n_clips=n_clips,
            model=self.backend.model,
            backend=self.backend.name,
            prompt_version=PROMPT_VERSION,
        )
        if resumable(earlier, record):
            previous = earlier_outcomes(earlier)
            self.summary.resumed += 1
            self.summary.kept_requests += len(previous.done) + (previous.events_done is not None)
        else:
            previous = EarlierRecord()
        covered = {clip for outcome in previous.done for clip in outcome.entry["clips"]}
        to_ask = [clip for clip in range(n_clips) if clip not in covered]
        with_events = previous.events_done is None
        try:
            async with self.decode_slots:
                frames = await asyncio.to_thread(self._extract_frames, job, to_ask, with_events)
        except VideoDecodeError as err:
            record["errors"].append(f"decode: {err}")
            kept_events = previous.events_done or previous.events_redo
            return finish_record(record, previous.done + previous.redo, kept_events)

        missing = [clip for clip in to_ask if clip not in frames.captions]
        if missing:
            record["errors"].append(f"frames: {len(missing)} of {n_clips} clip frames unavailable")
        batches, earlier_outcome, not_redone = caption_batches(
            previous.redo, list(frames.captions), self.options.caption_batch
        )
        requests = [self.ask_captions(batch, [frames.captions[i] for i in batch]) for batch in batches]
        if frames.events:
            requests.append(self.ask_events(frames.events, job.duration))
        elif with_events:
            record["errors"].append("events: no event frame available")
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(coro) for coro in requests]
        except* FatalBackendError as errors:
            raise errors.exceptions[0] from None  # the group has cancelled this video's other requests
        outcomes = [task.result() for task in tasks]
        if frames.events:
            events = better(outcomes.pop(), previous.events_redo)
        else:
            events = previous.events_done or previous.events_redo
        captions = [better(new, old) for new, old in zip(outcomes, earlier_outcome)]
        return finish_record(record, previous.done + captions + not_redone, events)


def select_jobs(
    jobs: list[VideoJob], cache: dict[str, dict[str, Any]], *, shard: tuple[int, int] | None, limit: int | None
) -> tuple[list[VideoJob], int]:
    """(jobs still to do, number skipped because their cached record is ok), after sharding and limit."""
    if limit is not None and limit < 0:
        raise MasraError(f"must be >= 0, got {limit}", field="limit")
    if shard is not None:
        jobs = [job for job in jobs if shard_of(job.vid, shard[1]) == shard[0]]
    todo = [job for job in jobs if cache.get(job.vid, {}).get("status") != "ok"]
    skipped = len(jobs) - len(todo)
    if limit is not None:
        todo = todo[:limit]
    return todo, skipped


async def generate_priors_async(
    jobs: list[VideoJob],
    backend: ChatBackend,
    out: str | Path,
    options: GenerateOptions,
    *,
    shard: tuple[int, int] | None = None,
    limit: int | None = None,
) -> GenerateSummary:
    """Generate priors for ``jobs`` into the cache ``out``, resuming from what it holds: videos whose last
    record is ok are skipped; of a resumable partial record only the unfinished requests are asked again;
    failed (and other partial) videos are redone; each gets a new record appended. A fatal backend error
    ends the run with ``summary.stopped`` set, after everything finished has been written."""
    started = time.monotonic()
    cache = read_cache(out, repair=True)
    todo, skipped = select_jobs(jobs, cache, shard=shard, limit=limit)
    summary = GenerateSummary(skipped=skipped)
    run = _Run(backend, options, summary, asyncio.Semaphore(options.concurrency), asyncio.Semaphore(options.decode_threads))
    pending = iter(todo)
    with CacheWriter(out) as writer, tqdm(
        total=len(todo), unit="video", desc="priors", disable=not options.show_progress, dynamic_ncols=True
    ) as bar:

        async def worker() -> None:
            for job in pending:
                record = await run.process(job, cache.get(job.vid))
                writer.append(record)
                summary.videos += 1
                setattr(summary, record["status"], getattr(summary, record["status"]) + 1)
                bar.update(1)
                bar.set_postfix(
                    ok=summary.ok, partial=summary.partial, failed=summary.failed, retries=summary.retries,
                    reasks=summary.reasks,
                )

        workers = [asyncio.create_task(worker()) for _ in range(min(options.concurrency, len(todo)))]
        try:
            await asyncio.gather(*workers)
        except FatalBackendError as err:
            summary.stopped = str(err)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
    usage = getattr(backend, "usage", None)
    if isinstance(usage, dict):
        summary.prompt_tokens = int(usage.get("prompt_tokens", 0))
        summary.completion_tokens = int(usage.get("completion_tokens", 0))
    summary.seconds = time.monotonic() - started
    return summary


def generate_priors(
    jobs: list[VideoJob],
    backend: ChatBackend,
    out: str | Path,
    options: GenerateOptions,
    *,
    shard: tuple[int, int] | None = None,
    limit: int | None = None,
) -> GenerateSummary:
    """Synchronous wrapper around ``generate_priors_async``; closes the backend at the end."""

    async def main() -> GenerateSummary:
        try:
            return await generate_priors_async(jobs, backend, out, options, shard=shard, limit=limit)
        finally:
            await backend.aclose()

    return asyncio.run(main())
