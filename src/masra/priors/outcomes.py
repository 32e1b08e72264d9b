"""A video's cache record built from the outcomes of its requests, and completed from an earlier
``partial`` record: which requests to ask again, which replies to keep, and the record's status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from masra.priors.cache import REQUEST_STATUSES


@dataclass
class RequestOutcome:
    """One caption or events request after its retries and re-asks: the record's ``requests`` entry, the
    reply it ended with (kept raw) and what was read from it."""

    entry: dict[str, Any]
    reply: str | None
    captions: list[str | None] = field(default_factory=list)  # one per clip of a caption request
    events: list[dict[str, Any]] = field(default_factory=list)


def empty_record(
    vid: str, *, duration: float, clip_length: float, n_clips: int, model: str, backend: str, prompt_version: str
) -> dict[str, Any]:
    """A video's record before any request: status failed, no caption, no event."""
    return {
        "vid": vid,
        "duration": duration,
        "clip_length": clip_length,
        "n_clips": n_clips,
        "model": model,
        "backend": backend,
        "prompt_version": prompt_version,
        "status": "failed",
        "captions": [None] * n_clips,
        "events": [],
        "raw": {"events": None, "captions": []},
        "requests": [],
        "errors": [],
    }


def new_entry(kind: str, **fields: Any) -> dict[str, Any]:
    """A record's ``requests`` entry, before its outcome is known (status ``no_reply``)."""
    return {"kind": kind, "status": "no_reply", "error": None, **fields}


_REQUEST_RANK = {status: rank for rank, status in enumerate(reversed(REQUEST_STATUSES))}  # no_reply 0 < ... < ok 3


def better(new: RequestOutcome, old: RequestOutcome | None) -> RequestOutcome:
    """The redone request's outcome, unless it came back worse than the earlier one (then the earlier)."""
    if old is not None and _REQUEST_RANK[new.entry["status"]] < _REQUEST_RANK[old.entry["status"]]:
        return old
    return new


@dataclass
class EarlierRecord:
    """What a resumable ``partial`` record holds: its finished requests (kept as they are) and its
    unfinished ones (redone; kept only if the redo comes back worse)."""

    done: list[RequestOutcome] = field(default_factory=list)
    redo: list[RequestOutcome] = field(default_factory=list)
    events_done: RequestOutcome | None = None
    events_redo: RequestOutcome | None = None


def earlier_outcomes(record: dict[str, Any]) -> EarlierRecord:
    """Split a record's requests into finished (status ok) and unfinished ones, with their replies and
    the captions/events they gave."""
    done: list[RequestOutcome] = []
    redo: list[RequestOutcome] = []
    events_done = events_redo = None
    replies = iter(record.get("raw", {}).get("captions", []))
    for entry in record["requests"]:
        if entry["kind"] == "captions":
            captions = [record["captions"][clip] for clip in entry["clips"]]
            outcome = RequestOutcome(entry, next(replies, None), captions=captions)
            (done if entry["status"] == "ok" else redo).append(outcome)
        else:
            outcome = RequestOutcome(entry, record.get("raw", {}).get("events"), events=record["events"])
            if entry["status"] == "ok":
                events_done = outcome
            else:
                events_redo = outcome
    return EarlierRecord(done, redo, events_done, events_redo)


def resumable(record: dict[str, Any] | None, fresh: dict[str, Any]) -> bool:
    """Whether a cached record can be completed instead of redone: a ``partial`` record with per-request
    entries, made for the same duration and clips by the same model and prompt version as ``fresh`` (the
    new, empty record of the video)."""
    same = ("duration", "clip_length", "n_clips", "model", "prompt_version")
    return (
        record is not None
        and record["status"] == "partial"
        and "requests" in record
        and len(record["captions"]) == fresh["n_clips"]
        and all(record.get(key) == fresh[key] for key in same)
    )


def caption_batches(
    unfinished: list[RequestOutcome], readable: list[int], size: int
) -> tuple[list[list[int]], list[RequestOutcome | None], list[RequestOutcome]]:
    """Which clips to caption in which requests: the unfinished requests of an earlier record again, as
    they were (when every frame of theirs could be read), then the other ``readable`` clips in batches of
    ``size``. Returns the batches, the earlier outcome of each batch (None for a new one) and the
    unfinished requests that cannot be asked again now."""
    redone = [o for o in unfinished if all(clip in readable for clip in o.entry["clips"])]
    not_redone = [o for o in unfinished if o not in redone]
    in_earlier = {clip for o in unfinished for clip in o.entry["clips"]}
    rest = [clip for clip in readable if clip not in in_earlier]
    batches = [o.entry["clips"] for o in redone] + [rest[k : k + size] for k in range(0, len(rest), size)]
    return batches, [*redone, *[None] * (len(batches) - len(redone))], not_redone


def finish_record(
    record: dict[str, Any], captions: list[RequestOutcome], events: RequestOutcome | None
) -> dict[str, Any]:
    """Fill the record from its request outcomes (caption requests in clip order) and set its status:
    ok when every request is ok and every clip has a caption, partial when anything usable came back."""
    for number, outcome in enumerate(sorted(captions, key=lambda o: o.entry["clips"][0]), start=1):
        record["requests"].append(outcome.entry)
        record["raw"]["captions"].append(outcome.reply)
        for clip, caption in zip(outcome.entry["clips"], outcome.captions):
            record["captions"][clip] = caption
        if outcome.entry["error"]:
            record["errors"].append(f"captions request {number}: {outcome.entry['error']}")
    if events is not None:
        record["requests"].append(events.entry)
        record["raw"]["events"] = events.reply
        record["events"] = events.events
        if events.entry["error"]:
            record["errors"].append(f"events request: {events.entry['error']}")
    all_ok = events is not None and all(entry["status"] == "ok" for entry in record["requests"])
    if all_ok and all(caption is not None for caption in record["captions"]):
        record["status"] = "ok"
    elif record["events"] or (events is not None and events.entry["status"] == "ok") or any(
        caption is not None for caption in record["captions"]
    ):
        record["status"] = "partial"
    return _stamped(record)


def _stamped(record: dict[str, Any]) -> dict[str, Any]:
    record["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return record
