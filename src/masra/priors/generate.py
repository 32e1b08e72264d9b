"""The prior-generation scheduler: frames → requests → parsed record → cache, for many videos at once.

Concurrency model (asyncio): ``concurrency`` videos are worked on at a time and at most ``concurrency``
requests are in flight (a semaphore). Frame decoding runs in worker threads. Each request gets a timeout
and retries with exponential back-off and full jitter; a 429's Retry-After pauses every request, not only
the one that got it. A non-retryable error (bad key, unknown model, rejected request) stops the run:
videos already finished are on disk (each record is fsynced), the ones in flight are redone next time.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm import tqdm

from masra.errors import MasraError
from masra.priors.backends.base import DEFAULT_REQUEST_TIMEOUT, BackendError, ChatBackend
from masra.priors.cache import CacheWriter, read_cache
from masra.priors.frames import (
    VideoDecodeError,
    clip_centres,
    event_times,
    grab_frames,
    jpeg_data_url,
    resize_short_side,
)
from masra.priors.parsing import parse_captions, parse_events
from masra.priors.prompts import PROMPT_VERSION, caption_messages, event_messages
from masra.priors.videos import VideoJob

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
    max_retries: int = 5
    backoff_base: float = 1.0  # first back-off ceiling (seconds); doubles per attempt
    backoff_cap: float = 60.0
    retry_after_cap: float = 600.0
    decode_threads: int = 2
    show_progress: bool = True

    def __post_init__(self) -> None:
        limits = {
            "clip_length": self.clip_length > 0,
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
    unparsed_replies: int = 0
    caption_count_mismatches: int = 0
    events_dropped: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    stopped: str | None = None  # why the run stopped early
    seconds: float = 0.0

    def lines(self) -> list[str]:
        text = [
            f"videos: {self.videos} processed ({self.ok} ok, {self.partial} partial, {self.failed} failed), "
            f"{self.skipped} already done",
            f"requests: {self.requests} ({self.retries} retries, {self.failed_requests} gave up), "
            f"{self.unparsed_replies} unparsed replies, {self.caption_count_mismatches} caption-count mismatches, "
            f"{self.events_dropped} events dropped",
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
    captions: list[str | None]  # data URL per clip (None: no frame there)
    events: list[tuple[float, str]]  # (segment time, data URL)


@dataclass
class _Reply:
    text: str | None
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
                    return _Reply(text)
                except TimeoutError:
                    error = BackendError(f"no reply within {options.request_timeout} s", retryable=True)
                except BackendError as err:
                    error = err
            if not error.retryable:
                raise FatalBackendError(str(error))
            if attempt == options.max_retries:
                self.summary.failed_requests += 1
                return _Reply(None, f"gave up after {attempt + 1} attempts: {error}")
            delay = self._backoff(attempt, error.retry_after)
            if error.retry_after is not None:
                self.paused_until = max(self.paused_until, time.monotonic() + delay)
            log.debug("retry %d in %.2f s after: %s", attempt + 1, delay, error)
            self.summary.retries += 1
            attempt += 1
            await asyncio.sleep(delay)

    def _extract_frames(self, job: VideoJob) -> _Frames:
        options = self.options
        caption_times = clip_centres(job.duration, options.clip_length)
        event_at = event_times(job.duration, interval=options.event_interval, max_frames=options.event_frames)
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
        return _Frames([url(t, options.caption_short_side) for t in caption_times], events)

    async def process(self, job: VideoJob) -> dict[str, Any]:
        """The cache record for one video."""
        n_clips = len(clip_centres(job.duration, self.options.clip_length))
        record: dict[str, Any] = {
            "vid": job.vid,
            "duration": job.duration,
            "clip_length": self.options.clip_length,
            "n_clips": n_clips,
            "model": self.backend.model,
            "backend": self.backend.name,
            "prompt_version": PROMPT_VERSION,
            "status": "failed",
            "captions": [None] * n_clips,
            "events": [],
            "raw": {"events": None, "captions": []},
            "errors": [],
        }
        try:
            async with self.decode_slots:
                frames = await asyncio.to_thread(self._extract_frames, job)
        except VideoDecodeError as err:
            record["errors"].append(f"decode: {err}")
            return _stamped(record)

        available = [i for i, url in enumerate(frames.captions) if url is not None]
        if len(available) < n_clips:
            record["errors"].append(f"frames: {n_clips - len(available)} of {n_clips} clip frames unavailable")
        size = self.options.caption_batch
        batches = [available[k : k + size] for k in range(0, len(available), size)]
        requests = [self.request(caption_messages([frames.captions[i] for i in batch])) for batch in batches]
        if frames.events:
            requests.append(self.request(event_messages(frames.events, job.duration)))
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(coro) for coro in requests]
        except* FatalBackendError as errors:
            raise errors.exceptions[0] from None  # the group has cancelled this video's other requests
        replies = [task.result() for task in tasks]

        self._add_captions(record, batches, replies[: len(batches)])
        events_ok = False
        if frames.events:
            events_ok = self._add_events(record, replies[-1])
        else:
            record["errors"].append("events: no event frame available")
        n_captions = sum(c is not None for c in record["captions"])
        if events_ok and n_captions == n_clips:
            record["status"] = "ok"
        elif events_ok or n_captions:
            record["status"] = "partial"
        return _stamped(record)

    def _add_captions(self, record: dict[str, Any], batches: list[list[int]], replies: list[_Reply]) -> None:
        for number, (batch, reply) in enumerate(zip(batches, replies), start=1):
            record["raw"]["captions"].append(reply.text)
            if reply.text is None:
                record["errors"].append(f"captions request {number}: {reply.error}")
                continue
            parsed = parse_captions(reply.text, len(batch))
            self.summary.caption_count_mismatches += parsed.mismatch
            if parsed.error:
                self.summary.unparsed_replies += 1
                record["errors"].append(f"captions request {number}: {parsed.error}")
            elif parsed.mismatch:
                record["errors"].append(f"captions request {number}: expected {len(batch)} captions")
            for clip, caption in zip(batch, parsed.captions):
                record["captions"][clip] = caption

    def _add_events(self, record: dict[str, Any], reply: _Reply) -> bool:
        """Fill the record's events from the reply; False when there was no usable reply."""
        record["raw"]["events"] = reply.text
        if reply.text is None:
            record["errors"].append(f"events request: {reply.error}")
            return False
        parsed = parse_events(reply.text, record["duration"])
        self.summary.events_dropped += parsed.dropped
        if parsed.error:
            self.summary.unparsed_replies += 1
            record["errors"].append(f"events request: {parsed.error}")
            return False
        record["events"] = parsed.events
        return True


def _stamped(record: dict[str, Any]) -> dict[str, Any]:
    record["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return record


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
    """Generate priors for ``jobs`` into the cache ``out``, resuming from what it holds (videos whose last
    record is ok are skipped; partial/failed ones are redone and a new record appended). A fatal backend
    error ends the run with ``summary.stopped`` set, after everything finished has been written."""
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
                record = await run.process(job)
                writer.append(record)
                summary.videos += 1
                setattr(summary, record["status"], getattr(summary, record["status"]) + 1)
                bar.update(1)
                bar.set_postfix(ok=summary.ok, partial=summary.partial, failed=summary.failed, retries=summary.retries)

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
