"""Tolerant parsing of model replies."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from masra.priors.parsing import extract_json, parse_captions, parse_events, parse_time


@pytest.mark.parametrize(
    "text, expected",
    [
        ('[1, 2]', [1, 2]),
        ('Here you go: [{"a": "b]"}] -- done', [{"a": "b]"}]),  # bracket inside a string
        ('```json\n{"events": []}\n```', {"events": []}),
        ('```\n["x",]\n```', ["x"]),  # trailing comma repaired
        ('Note [see below]. Answer: ["real"]', ["real"]),  # an unparseable bracket first, then the JSON
        ('{"a": [1, {"b": "\\"q\\""}]} and more {"c": 1}', {"a": [1, {"b": '"q"'}]}),
        ("no json here", None),
        ("[1, 2", None),
    ],
)
def test_extract_json(text, expected):
    assert extract_json(text) == expected


@pytest.mark.parametrize(
    "value, seconds",
    [(12, 12.0), (3.5, 3.5), ("7", 7.0), ("7.25s", 7.25), ("12 seconds", 12.0), ("01:05", 65.0),
     ("1:02:03.5", 3723.5), ("00:00:09", 9.0), (True, None), ("soon", None), (None, None), ("1:75", 135.0)],
)
def test_parse_time(value, seconds):
    assert parse_time(value) == seconds


@given(st.integers(0, 5), st.integers(0, 59), st.integers(0, 59))
def test_clock_strings_round_trip(h, m, s):
    assert parse_time(f"{h:02d}:{m:02d}:{s:02d}") == h * 3600 + m * 60 + s
    assert parse_time(f"{h * 60 + m}:{s:02d}") == h * 3600 + m * 60 + s


def test_events_key_variants_clamping_and_swaps():
    reply = "Events:\n" + json.dumps([
        {"start": "00:10", "end": "00:04", "description": " swapped "},  # reversed → swapped
        {"timestamp": [100, 200], "caption": "runs past the end"},  # clamped to duration
        {"span": "0:20 - 0:30", "event": "string span"},
        {"start_time": -5, "end_time": 3, "text": "before the start"},  # clamped to 0
        {"start": 1, "end": 2, "description": "   "},  # empty text → dropped
        {"start": "later", "end": 2, "description": "bad time"},  # no time → dropped
        {"start": 200, "end": 300, "description": "outside"},  # empty after clamping → dropped
        [40, 50, "list form"],
        {"start": 4, "end": 10, "description": "overlaps the first"},
    ]) + "\nThat is all."
    parsed = parse_events(reply, 120)
    assert parsed.error is None
    assert parsed.events == [
        {"start": 4.0, "end": 10.0, "description": "swapped"},
        {"start": 100.0, "end": 120.0, "description": "runs past the end"},
        {"start": 20.0, "end": 30.0, "description": "string span"},
        {"start": 0.0, "end": 3.0, "description": "before the start"},
        {"start": 40.0, "end": 50.0, "description": "list form"},
        {"start": 4.0, "end": 10.0, "description": "overlaps the first"},
    ]
    assert parsed.dropped == 3 and parsed.fixed == 3


def test_events_wrapped_in_an_object():
    parsed = parse_events('{"video": "x", "events": [{"begin": 1, "finish": 2, "summary": "a"}]}', 10)
    assert parsed.events == [{"start": 1.0, "end": 2.0, "description": "a"}]


@pytest.mark.parametrize("reply", ["I am not sure what happens.", '{"answer": "none"}', "[1, 2"])
def test_events_without_a_list_is_an_error(reply):
    parsed = parse_events(reply, 10)
    assert parsed.events == [] and parsed.error


def test_empty_event_list_is_valid():
    parsed = parse_events("```json\n[]\n```", 10)
    assert parsed.events == [] and parsed.error is None


@given(st.lists(st.tuples(st.floats(-50, 250), st.floats(-50, 250)), max_size=8), st.floats(1, 200))
def test_events_always_inside_the_video(spans, duration):
    reply = json.dumps([{"start": s, "end": e, "description": "x"} for s, e in spans])
    parsed = parse_events(reply, duration)
    assert len(parsed.events) + parsed.dropped == len(spans)
    for event in parsed.events:
        assert 0.0 <= event["start"] < event["end"] <= duration


def test_captions_exact_short_long():
    assert parse_captions('["a", "b", "c"]', 3).captions == ["a", "b", "c"]
    short = parse_captions('Sure: ["a", "b"]', 3)
    assert short.captions == ["a", "b", None] and short.mismatch and short.error is None
    long = parse_captions('["a", "b", "c", "d"]', 3)
    assert long.captions == ["a", "b", "c"] and long.mismatch


def test_captions_other_shapes():
    assert parse_captions('{"captions": [{"caption": "a"}, {"text": "b"}]}', 2).captions == ["a", "b"]
    assert parse_captions('{"2": "second", "1": "first"}', 2).captions == ["first", "second"]
    assert parse_captions("1. A dog runs.\n2) A cat sleeps.\nFrame 3: A bird.", 3).captions == [
        "A dog runs.", "A cat sleeps.", "A bird."]
    assert parse_captions("A lone sentence.", 1).captions == ["A lone sentence."]
    assert parse_captions('["", "  ", "ok"]', 3).captions == [None, None, "ok"]


def test_captions_unparseable():
    parsed = parse_captions("I see several frames of a street.", 4)
    assert parsed.captions == [None] * 4 and parsed.error
    blank = parse_captions('["", ""]', 2)
    assert blank.captions == [None, None] and blank.error
