"""Malformed cache records: validated once when read, reported as ``file:line: field`` by both commands
that read a cache (`priors check`, `priors encode`), never as a traceback; and a torn last line is reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from masra.cli.main import main
from masra.errors import MasraError
from masra.priors.cache import read_cache, scan_cache


def record(vid: str = "a", **extra) -> dict:
    return {
        "vid": vid, "duration": 4.0, "clip_length": 2.0, "n_clips": 2, "model": "m", "backend": "openai",
        "prompt_version": "v2", "status": "ok", "captions": ["x", "y"],
        "events": [{"start": 0.0, "end": 2.0, "description": "d"}], "raw": {"events": "[]", "captions": ["[]"]},
        "requests": [{"kind": "captions", "clips": [0, 1], "status": "ok", "attempts": 1, "asks": 1, "error": None},
                     {"kind": "events", "status": "ok", "attempts": 1, "asks": 1, "error": None}],
        "errors": [], "created": "2026-01-01T00:00:00+00:00", **extra,
    }


def with_event(**event) -> str:
    return json.dumps(record(events=[{"start": 0.0, "end": 2.0, "description": "d", **event}]))


# (case, the second line of the cache, the field the error must name)
BAD_LINES = [
    ("start is a string", with_event(start="abc"), "events[0].start"),
    ("start too large for a float", with_event(start=10**400), "events[0].start"),
    ("end is Infinity", with_event(end=float("inf")), "events[0].end"),
    ("end overflows to inf", with_event(end=2.0).replace('"end": 2.0', '"end": 1e400'), "events[0].end"),
    ("description is a number", with_event(description=5), "events[0].description"),
    ("raw is a string", json.dumps(record(raw="text")), "raw"),
    ("raw.captions is a string", json.dumps(record(raw={"events": None, "captions": "x"})), "raw.captions"),
    ("raw.events is an object", json.dumps(record(raw={"events": {"a": 1}, "captions": []})), "raw.events"),
    ("n_clips is a string", json.dumps(record(n_clips="2")), "n_clips"),
    ("n_clips disagrees", json.dumps(record(n_clips=3)), "captions"),
    ("errors is a string", json.dumps(record(errors="boom")), "errors"),
    ("request status unknown", json.dumps(record(requests=[{**record()["requests"][0], "status": "fine"}])), "requests[0].status"),
    ("request clip out of range", json.dumps(record(requests=[{**record()["requests"][0], "clips": [0, 7]}])), "requests[0].clips"),
    ("attempts is a string", json.dumps(record(requests=[{**record()["requests"][1], "attempts": "1"}])), "requests[0].attempts"),
    ("deep nesting in an extra field", json.dumps(record(extra=json.loads("[" * 40 + "]" * 40))), "record"),
]


def write(tmp_path: Path, second_line: str) -> Path:
    path = tmp_path / "priors.jsonl"
    path.write_text(json.dumps(record("good")) + "\n" + second_line + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("case, line, field", BAD_LINES, ids=[case for case, _, _ in BAD_LINES])
def test_a_bad_record_is_reported_with_file_line_and_field_by_check_and_encode(tmp_path, capsys, case, line, field):
    cache = write(tmp_path, line)
    with pytest.raises(MasraError) as err:
        read_cache(cache)
    assert (err.value.file, err.value.line, err.value.field) == (str(cache), 2, field)

    expected = f"{cache}:2: field '{field}': "
    assert main(["priors", "check", "--priors", str(cache)]) == 1
    assert expected in capsys.readouterr().err
    out = tmp_path / "encoded"
    assert main(["priors", "encode", "--priors", str(cache), "--out", str(out), "--no-progress"]) == 1
    assert expected in capsys.readouterr().err
    assert not out.exists()  # refused before anything was written


def test_n_clips_as_a_string_is_reported_as_a_type_error(tmp_path):
    cache = write(tmp_path, json.dumps(record(n_clips="2")))
    with pytest.raises(MasraError) as err:
        read_cache(cache)
    assert err.value.field == "n_clips" and "expected a whole number >= 0, got '2'" in err.value.message


@pytest.mark.parametrize(
    "case, line, message",
    [
        ("nesting deeper than the JSON parser goes", '{"vid": "b", "x": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
        ("an integer literal with 5000 digits", json.dumps(record("b")).replace('"duration": 4.0', '"duration": ' + "9" * 5000), "too large for a float"),
        ("a latin-1 line", json.dumps(record("b", captions=["caf\u00e9", "y"]), ensure_ascii=False), None),
    ],
)
def test_lines_the_json_parser_cannot_take_are_reported(tmp_path, capsys, case, line, message):
    cache = tmp_path / "priors.jsonl"
    data = json.dumps(record("good")).encode() + b"\n"
    data += line.encode("latin-1") if message is None else line.encode()
    cache.write_bytes(data + b"\n")
    with pytest.raises(MasraError) as err:
        read_cache(cache)
    assert err.value.line == 2 and (message or "not UTF-8 text") in err.value.message
    assert main(["priors", "check", "--priors", str(cache)]) == 1
    assert f"{cache}:2: " in capsys.readouterr().err


def test_old_records_without_request_entries_stay_readable(tmp_path):
    old = {k: v for k, v in record("old", prompt_version="v1").items() if k != "requests"}
    minimal = {k: record("min")[k] for k in ("vid", "status", "duration", "clip_length", "captions", "events")}
    cache = tmp_path / "priors.jsonl"
    cache.write_text(json.dumps(old) + "\n" + json.dumps(minimal) + "\n")
    assert list(read_cache(cache)) == ["old", "min"]


def test_check_reports_a_torn_last_line(tmp_path, capsys):
    cache = tmp_path / "priors.jsonl"
    torn = json.dumps(record("torn"))[:50]
    cache.write_text(json.dumps(record("a")) + "\n" + torn)
    contents = scan_cache(cache)
    assert list(contents.records) == ["a"] and contents.torn_bytes == len(torn)
    assert main(["priors", "check", "--priors", str(cache), "--json", str(tmp_path / "r.json")]) == 0
    assert f"{len(torn)} bytes, ignored" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["torn_bytes"] == len(torn)
    cache.write_text(json.dumps(record("a")) + "\n")
    assert main(["priors", "check", "--priors", str(cache)]) == 0
    assert "torn last line" not in capsys.readouterr().out
