"""The prior cache: ``priors.jsonl``, one record per video, appended and fsynced video by video.

Record layout (docs/priors.md): ``vid, duration, clip_length, n_clips, model, backend, prompt_version,
status ("ok" | "partial" | "failed"), captions [str|null per clip], events [{start, end, description}],
raw {events: str|null, captions: [str|null per caption request]}, requests [{kind, clips, status, attempts,
asks, error}], errors [str], created`` (ISO-8601). ``requests`` is absent from records written before it
existed (prompt version v1); such records stay readable. A vid may appear several times (a retry appends a
new record); the last record for a vid wins.

Every record is validated here, once, when it is read (``validate_record``): the rest of the package relies
on the types checked here and checks nothing again. A bad record raises MasraError naming file, line and field.

A process killed in the middle of a write leaves at most one torn line, at the very end, without its
newline. Readers ignore it (``scan_cache`` reports its size); the generator cuts it off before appending
(``repair=True``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from masra.data.jsonl import parse_json_line, write_jsonl
from masra.errors import MasraError

STATUSES = ("ok", "partial", "failed")
_STATUS_RANK = {status: rank for rank, status in enumerate(reversed(STATUSES))}  # failed 0 < partial 1 < ok 2
# What became of one request (best first): a usable reply, a caption reply with the wrong number of
# captions (after the re-asks), a reply nothing could be read from, no reply at all (after the retries).
REQUEST_STATUSES = ("ok", "miscounted", "unparsed", "no_reply")
REQUEST_KINDS = ("captions", "events")
# A record nests 4 levels (record > requests > entry > clips); anything much deeper is not a record and
# would only risk the recursion limits of whoever handles it next.
MAX_DEPTH = 16
RECORD_START = b'{"vid": '  # how every line CacheWriter writes begins (it puts ``vid`` first)


def _is_number(value: Any) -> bool:
    """A finite JSON number (not a bool); an integer too large for a float is not one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _optional_str(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _is_list(value: Any) -> bool:
    return isinstance(value, list)


def _is_object(value: Any) -> bool:
    return isinstance(value, dict)


def _is_string_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _depth(value: Any) -> int:
    """Nesting depth of a JSON value (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            level += 1
            deepest = max(deepest, level)
            if level <= MAX_DEPTH:
                stack.extend((child, level) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _require(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise MasraError(message, field=name)


def _shown(value: Any) -> str:
    """A short rendering of a bad value for an error message."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**18:
        return f"an integer of {len(str(abs(value)))} digits"
    return f"{value!r:.80}"


def _expect(value: Any, check: Callable[[Any], bool], name: str, what: str) -> None:
    _require(check(value), name, f"expected {what}, got {_shown(value)}")


def _check_events(events: Any) -> None:
    _expect(events, _is_list, "events", "a list")
    for k, event in enumerate(events):
        where = f"events[{k}]"
        _expect(event, _is_object, where, "an object")
        for key in ("start", "end", "description"):
            _require(key in event, f"{where}.{key}", "missing")
        _expect(event["start"], _is_number, f"{where}.start", "a finite number")
        _expect(event["end"], _is_number, f"{where}.end", "a finite number")
        _expect(event["description"], lambda v: isinstance(v, str), f"{where}.description", "a string")


def _check_raw(raw: Any) -> None:
    _expect(raw, _is_object, "raw", "an object")
    _expect(raw.get("events"), _optional_str, "raw.events", "a string or null")
    replies = raw.get("captions", [])
    _expect(replies, _is_list, "raw.captions", "a list")
    for k, reply in enumerate(replies):
        _expect(reply, _optional_str, f"raw.captions[{k}]", "a string or null")


def _check_requests(requests: Any, n_clips: int) -> None:
    _expect(requests, _is_list, "requests", "a list")
    for k, entry in enumerate(requests):
        where = f"requests[{k}]"
        _expect(entry, _is_object, where, "an object")
        _expect(entry.get("kind"), lambda v: v in REQUEST_KINDS, f"{where}.kind", " or ".join(REQUEST_KINDS))
        statuses = "one of " + ", ".join(REQUEST_STATUSES)
        _expect(entry.get("status"), lambda v: v in REQUEST_STATUSES, f"{where}.status", statuses)
        _expect(entry.get("attempts"), _is_count, f"{where}.attempts", "a whole number >= 0")
        _expect(entry.get("asks"), _is_count, f"{where}.asks", "a whole number >= 0")
        _expect(entry.get("error"), _optional_str, f"{where}.error", "a string or null")
        if entry["kind"] == "captions":
            clips = entry.get("clips")
            _expect(
                clips,
                lambda v: isinstance(v, list) and v != [] and all(_is_count(c) and c < n_clips for c in v),
                f"{where}.clips",
                f"a non-empty list of clip indices below {n_clips}",
            )
    _require(sum(entry["kind"] == "events" for entry in requests) <= 1, "requests", "more than one events request")


def _check_fields(record: Any) -> None:
    _expect(record, _is_object, "record", "a JSON object")
    _require(_depth(record) <= MAX_DEPTH, "record", f"nested more than {MAX_DEPTH} levels deep")
    for name in ("vid", "status", "duration", "clip_length", "captions", "events"):
        _require(name in record, name, "missing")
    _expect(record["vid"], lambda v: isinstance(v, str) and v != "", "vid", "a non-empty string")
    _expect(record["status"], lambda v: v in STATUSES, "status", "one of " + ", ".join(STATUSES))
    _expect(record["duration"], lambda v: _is_number(v) and v > 0, "duration", "a positive number")
    _expect(record["clip_length"], lambda v: _is_number(v) and v > 0, "clip_length", "a positive number")
    captions = record["captions"]
    _expect(captions, _is_list, "captions", "a list")
    for k, caption in enumerate(captions):
        _expect(caption, _optional_str, f"captions[{k}]", "a string or null")
    if "n_clips" in record:
        _expect(record["n_clips"], _is_count, "n_clips", "a whole number >= 0")
        n_clips = record["n_clips"]
        _require(len(captions) == n_clips, "captions", f"{len(captions)} captions for n_clips={n_clips}")
    _check_events(record["events"])
    if "raw" in record:
        _check_raw(record["raw"])
    if "requests" in record:
        _check_requests(record["requests"], len(captions))
    if "errors" in record:
        _expect(record["errors"], _is_string_list, "errors", "a list of strings")
    for name in ("model", "backend", "prompt_version", "created"):
        _expect(record.get(name), _optional_str, name, "a string")


def validate_record(record: Any, *, file: str | Path | None = None, line: int | None = None) -> dict[str, Any]:
    """Check every field the package reads; raise MasraError naming file, line and the bad field
    (``events[2].start``, ``raw.captions[0]``, ...). Returns the record unchanged."""
    try:
        _check_fields(record)
    except MasraError as err:
        raise MasraError(err.message, file=file, line=line, field=err.field) from None
    return record


def _complete_length(path: Path) -> int:
    """Byte length of the file up to and including its last newline (scanning back from the end)."""
    with path.open("rb") as handle:
        position = handle.seek(0, os.SEEK_END)
        while position > 0:
            step = min(1 << 16, position)
            position -= step
            handle.seek(position)
            newline = handle.read(step).rfind(b"\n")
            if newline >= 0:
                return position + newline + 1
    return 0


@dataclass
class CacheContents:
    """A cache as read: the effective record per vid (last one wins, first-seen order), the line each
    came from, the number of complete lines and the size of a torn last line (0 when there is none)."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    line_count: int = 0
    torn_bytes: int = 0


def _cut_torn_line(path: Path, complete: int, line_no: int) -> None:
    """Cut the torn last line off, but only when it is the start of a record this package wrote."""
    with path.open("r+b") as handle:
        handle.seek(complete)
        head = handle.read(len(RECORD_START))
        if not (head.startswith(RECORD_START) or RECORD_START.startswith(head)):
            raise MasraError(
                "the last line has no newline and is not the start of a prior record; refusing to cut it "
                "(is this a prior cache?)",
                file=path,
                line=line_no,
            )
        handle.truncate(complete)
        handle.flush()
        os.fsync(handle.fileno())


def scan_cache(path: str | Path, *, repair: bool = False) -> CacheContents:
    """Read and validate a cache. A missing file is an empty cache. A torn last line (no trailing
    newline, e.g. after ``kill -9``) is ignored and measured; with ``repair`` it is cut from the file,
    after every complete line has been validated and only if it is the start of a record. Any bad line
    raises MasraError naming the file, line and field (and the file is left as it was)."""
    path = Path(path)
    contents = CacheContents()
    if not path.exists():
        return contents
    if not path.is_file():
        raise MasraError("not a file", file=path)
    complete = _complete_length(path)
    contents.torn_bytes = path.stat().st_size - complete
    with path.open("rb") as handle:
        body = handle.read(complete)
    lines = body.split(b"\n")[:-1]
    contents.line_count = len(lines)
    for line_no, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        record = validate_record(parse_json_line(raw, path, line_no), file=path, line=line_no)
        contents.records.pop(record["vid"], None)
        contents.records[record["vid"]] = record
        contents.lines[record["vid"]] = line_no
    if repair and contents.torn_bytes:
        _cut_torn_line(path, complete, contents.line_count + 1)
    return contents


def read_cache(path: str | Path, *, repair: bool = False) -> dict[str, dict[str, Any]]:
    """The effective records of a cache (see ``scan_cache``)."""
    return scan_cache(path, repair=repair).records


class CacheWriter:
    """Appends records, one JSON line each, flushed and fsynced before ``append`` returns."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle: IO[str] = self.path.open("a", encoding="utf-8")

    def append(self, record: dict[str, Any]) -> None:
        validate_record(record)
        line = json.dumps({"vid": record["vid"], **record}, ensure_ascii=False)  # starts with RECORD_START
        self._handle.write(line + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_merge_target(inputs: list[Path], out: Path, force: bool) -> None:
    """Refuse to replace anything but an earlier prior cache, and that only with ``force``."""
    if any(path.exists() and out.exists() and path.samefile(out) for path in inputs):
        raise MasraError("--out is one of the inputs; write the merge to a new file", file=out)
    if not out.exists():
        return
    if not force:
        raise MasraError("file exists; pass --force to replace it", file=out)
    try:
        scan_cache(out)
    except MasraError as err:
        raise MasraError(f"not a prior cache ({err}); refusing to replace it", file=out) from None


def merge_caches(inputs: list[str | Path], out: str | Path, *, force: bool = False) -> dict[str, int]:
    """Combine caches (e.g. one per shard) into one compact file with one record per vid. For a vid found
    in several inputs the record with the better status wins (ok > partial > failed); on a tie the later
    input wins. Written atomically. An existing ``out`` is replaced only with ``force`` and only when it
    is itself a prior cache (never one of the inputs). Returns the count of records per status."""
    paths = [Path(path) for path in inputs]
    out = Path(out)
    for path in paths:
        if not path.is_file():
            raise MasraError("file not found", file=path)
    _check_merge_target(paths, out, force)
    merged: dict[str, dict[str, Any]] = {}
    for path in paths:
        for vid, record in read_cache(path).items():
            previous = merged.get(vid)
            if previous is None or _STATUS_RANK[record["status"]] >= _STATUS_RANK[previous["status"]]:
                merged[vid] = record
    write_jsonl(out, merged.values())
    counts = dict.fromkeys(STATUSES, 0)
    for record in merged.values():
        counts[record["status"]] += 1
    return counts
