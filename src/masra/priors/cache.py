"""The prior cache: ``priors.jsonl``, one record per video, appended and fsynced video by video.

Record layout (docs/ARCHITECTURE.md): ``vid, duration, clip_length, n_clips, model, backend, prompt_version,
status ("ok" | "partial" | "failed"), captions [str|null per clip], events [{start, end, description}],
raw {events: str|null, captions: [str|null per request]}, errors [str], created`` (ISO-8601).
A vid may appear several times (a retry appends a new record); the last record for a vid wins.

A process killed in the middle of a write leaves at most one torn line, at the very end, without its
newline. Readers ignore it; the generator cuts it off before appending (``repair=True``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

from masra.data.jsonl import write_jsonl
from masra.errors import MasraError

STATUSES = ("ok", "partial", "failed")
_STATUS_RANK = {status: rank for rank, status in enumerate(reversed(STATUSES))}  # failed 0 < partial 1 < ok 2


def validate_record(record: Any, *, file: str | Path | None = None, line: int | None = None) -> dict[str, Any]:
    """Check the fields the rest of the package relies on; raise MasraError naming the bad one."""
    if not isinstance(record, dict):
        raise MasraError(f"expected a JSON object, got {type(record).__name__}", file=file, line=line)
    checks = {
        "vid": lambda v: isinstance(v, str) and v != "",
        "status": lambda v: v in STATUSES,
        "duration": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0,
        "clip_length": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0,
        "captions": lambda v: isinstance(v, list) and all(c is None or isinstance(c, str) for c in v),
        "events": lambda v: isinstance(v, list)
        and all(isinstance(e, dict) and {"start", "end", "description"} <= e.keys() for e in v),
    }
    for name, ok in checks.items():
        if name not in record:
            raise MasraError("missing", file=file, line=line, field=name)
        if not ok(record[name]):
            raise MasraError(f"invalid value {record[name]!r:.80}", file=file, line=line, field=name)
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


def read_cache(path: str | Path, *, repair: bool = False) -> dict[str, dict[str, Any]]:
    """The effective records (last one per vid, in first-seen order). A missing file is an empty cache.
    A torn last line (no trailing newline, e.g. after ``kill -9``) is ignored, or cut from the file when
    ``repair`` is set; any other bad line raises MasraError naming the file and line."""
    path = Path(path)
    if not path.exists():
        return {}
    complete = _complete_length(path)
    if repair and complete < path.stat().st_size:
        with path.open("r+b") as handle:
            handle.truncate(complete)
            handle.flush()
            os.fsync(handle.fileno())
    records: dict[str, dict[str, Any]] = {}
    with path.open("rb") as handle:
        body = handle.read(complete)
    for line_no, raw in enumerate(body.decode("utf-8", errors="replace").split("\n")[:-1], start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as err:
            raise MasraError(f"invalid JSON ({err.msg} at column {err.colno})", file=path, line=line_no) from None
        validate_record(record, file=path, line=line_no)
        records.pop(record["vid"], None)
        records[record["vid"]] = record
    return records


class CacheWriter:
    """Appends records, one JSON line each, flushed and fsynced before ``append`` returns."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle: IO[str] = self.path.open("a", encoding="utf-8")

    def append(self, record: dict[str, Any]) -> None:
        validate_record(record)
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def merge_caches(inputs: list[str | Path], out: str | Path) -> dict[str, int]:
    """Combine caches (e.g. one per shard) into one compact file with one record per vid. For a vid found
    in several inputs the record with the better status wins (ok > partial > failed); on a tie the later
    input wins. Written atomically. Returns the count of records per status."""
    merged: dict[str, dict[str, Any]] = {}
    for path in inputs:
        if not Path(path).is_file():
            raise MasraError("file not found", file=path)
        for vid, record in read_cache(path).items():
            previous = merged.get(vid)
            if previous is None or _STATUS_RANK[record["status"]] >= _STATUS_RANK[previous["status"]]:
                merged[vid] = record
    write_jsonl(out, merged.values())
    counts = dict.fromkeys(STATUSES, 0)
    for record in merged.values():
        counts[record["status"]] += 1
    return counts
