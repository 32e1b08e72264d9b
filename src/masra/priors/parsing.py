"""Tolerant parsing of MLLM replies: JSON inside prose or code fences, times as seconds or clock strings,
the usual key variants. Nothing here raises on a bad reply: the result says what could not be read, so the
caller records it (with the raw text) instead of dropping it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",(\s*[\]}])")
_CLOCK = re.compile(r"^(?:(\d+):)?(\d+):(\d{1,2}(?:\.\d+)?)$")
_SECONDS = re.compile(r"^(\d+(?:\.\d+)?)\s*(?:s|sec|secs|second|seconds)?$", re.IGNORECASE)
_RANGE_SPLIT = re.compile(r"\s*(?:-|–|—|\bto\b)\s*")
_NUMBERED_LINE = re.compile(r"^\s*(?:frame\s*)?(\d+)\s*[.):\-]\s*(.+?)\s*$", re.IGNORECASE)

START_KEYS = ("start", "start_time", "start_sec", "begin", "from")
END_KEYS = ("end", "end_time", "end_sec", "finish", "to")
SPAN_KEYS = ("timestamp", "timestamps", "span", "time", "times", "segment", "interval", "window", "range")
TEXT_KEYS = ("description", "desc", "caption", "event", "text", "summary", "label", "sentence")
LIST_KEYS = ("events", "captions", "segments", "results", "items", "data")


def _balanced_end(text: str, begin: int) -> int | None:
    """Index just past the bracket that closes the one at ``begin`` (string-aware), or None."""
    stack: list[str] = []
    in_string = False
    escaped = False
    for pos in range(begin, len(text)):
        char = text[pos]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            stack.append("]" if char == "[" else "}")
        elif char in "]}":
            if not stack or stack.pop() != char:
                return None
            if not stack:
                return pos + 1
    return None


def _loads(candidate: str) -> Any:
    try:
        return json.loads(candidate)
    except json.JSONDecodeError:
        return json.loads(_TRAILING_COMMA.sub(r"\1", candidate))  # a common model slip: [1, 2,]


def extract_json(text: str) -> Any | None:
    """The first JSON array or object found in ``text``: the whole text, a fenced block, or the first
    balanced ``[...]``/``{...}`` that parses. None when there is none."""
    candidates = [text.strip()] + [block.strip() for block in _FENCE.findall(text)]
    for candidate in candidates:
        if candidate[:1] in "[{":
            try:
                return _loads(candidate)
            except json.JSONDecodeError:
                pass
    for begin, char in enumerate(text):
        if char in "[{":
            end = _balanced_end(text, begin)
            if end is not None:
                try:
                    return _loads(text[begin:end])
                except json.JSONDecodeError:
                    continue
    return None


def parse_time(value: Any) -> float | None:
    """Seconds from a number, a numeric string ("12.5", "12.5s") or a clock ("mm:ss", "hh:mm:ss[.f]")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    match = _SECONDS.match(text)
    if match:
        return float(match.group(1))
    match = _CLOCK.match(text)
    if match:
        hours, minutes, seconds = match.groups()
        return int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)
    return None


def _first_key(obj: dict[str, Any], keys: tuple[str, ...]) -> Any:
    lowered = {str(k).lower(): v for k, v in obj.items()}
    for key in keys:
        if key in lowered:
            return lowered[key]
    return None


def _span_from(value: Any) -> tuple[float | None, float | None]:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return parse_time(value[0]), parse_time(value[1])
    if isinstance(value, str):
        parts = _RANGE_SPLIT.split(value.strip().strip("[]()"))
        if len(parts) == 2:
            return parse_time(parts[0]), parse_time(parts[1])
    return None, None


def _unwrap_list(obj: Any) -> list[Any] | None:
    """A list, or the list a wrapper object holds (``{"events": [...]}``)."""
    if isinstance(obj, list):
        return obj
    if isinstance(obj, dict):
        value = _first_key(obj, LIST_KEYS)
        if isinstance(value, list):
            return value
        lists = [v for v in obj.values() if isinstance(v, list)]
        if len(lists) == 1:
            return lists[0]
    return None


@dataclass
class ParsedEvents:
    events: list[dict[str, Any]] = field(default_factory=list)  # {"start", "end", "description"}
    dropped: int = 0  # items without usable times or text
    fixed: int = 0  # reversed spans swapped or spans clamped to [0, duration]
    error: str | None = None  # set when the reply held no list of events at all


def _event_parts(item: Any) -> tuple[float | None, float | None, Any]:
    if isinstance(item, dict):
        start, end = parse_time(_first_key(item, START_KEYS)), parse_time(_first_key(item, END_KEYS))
        if start is None or end is None:
            start, end = _span_from(_first_key(item, SPAN_KEYS))
        return start, end, _first_key(item, TEXT_KEYS)
    if isinstance(item, (list, tuple)) and len(item) == 3:
        return parse_time(item[0]), parse_time(item[1]), item[2]
    return None, None, None


def parse_events(text: str, duration: float) -> ParsedEvents:
    """Events from a reply: spans clamped to [0, duration], reversed spans swapped, items with no valid
    span or an empty description dropped (counted), overlapping events kept, order as given."""
    duration = float(duration)
    items = _unwrap_list(extract_json(text))
    if items is None:
        return ParsedEvents(error="no JSON list of events in the reply")
    result = ParsedEvents()
    for item in items:
        start, end, description = _event_parts(item)
        if start is None or end is None or not isinstance(description, str) or not description.strip():
            result.dropped += 1
            continue
        swapped = start > end
        if swapped:
            start, end = end, start
        clamped = (min(max(start, 0.0), duration), min(max(end, 0.0), duration))
        if clamped[1] <= clamped[0]:
            result.dropped += 1  # empty after clamping: the span lay wholly outside the video
            continue
        result.fixed += swapped or clamped != (start, end)
        result.events.append({"start": clamped[0], "end": clamped[1], "description": description.strip()})
    return result


@dataclass
class ParsedCaptions:
    captions: list[str | None]  # exactly the expected number; None where no caption was given
    mismatch: bool = False  # the reply held a different number of captions than frames
    error: str | None = None  # set when no caption at all could be read
    found: int = 0  # non-empty captions in the whole reply (extra ones included)

    @property
    def complete(self) -> bool:
        """One non-empty caption for every frame, no more, no less."""
        return not self.mismatch and self.error is None and all(c is not None for c in self.captions)


def _caption_text(item: Any) -> str | None:
    if isinstance(item, dict):
        item = _first_key(item, TEXT_KEYS)
    if isinstance(item, str) and item.strip():
        return item.strip()
    return None


def _numbered_lines(text: str) -> list[str] | None:
    """Captions written as "1. ...", "Frame 2: ..." lines, when the model ignored the JSON request."""
    numbered = [_NUMBERED_LINE.match(line) for line in text.splitlines()]
    found = [m for m in numbered if m]
    if not found or [int(m.group(1)) for m in found] != list(range(1, len(found) + 1)):
        return None
    return [m.group(2) for m in found]


def parse_captions(text: str, expected: int) -> ParsedCaptions:
    """``expected`` captions from a reply that should hold a JSON list of sentences in frame order.
    Extra captions are cut, missing ones are None; both set ``mismatch``."""
    obj = extract_json(text)
    items: list[Any] | None
    if isinstance(obj, dict) and all(str(k).strip().isdigit() for k in obj):
        items = [obj[k] for k in sorted(obj, key=lambda k: int(str(k).strip()))]  # {"1": "...", "2": "..."}
    else:
        items = _unwrap_list(obj)
    if items is None:
        items = _numbered_lines(text)
    if items is None and expected == 1 and obj is None and text.strip():
        items = [text.strip()]  # a single frame answered with a bare sentence
    if items is None:
        return ParsedCaptions([None] * expected, mismatch=True, error="no list of captions in the reply")
    texts = [_caption_text(item) for item in items]
    found = sum(text is not None for text in texts)
    captions = texts[:expected] + [None] * (expected - len(texts))
    mismatch = len(items) != expected
    if all(c is None for c in captions):
        return ParsedCaptions(captions, mismatch=mismatch, error="the reply held no caption text", found=found)
    return ParsedCaptions(captions, mismatch=mismatch, found=found)
