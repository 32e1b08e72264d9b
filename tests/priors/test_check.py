"""`check_priors`: coverage, captions, events, span histogram, statuses and parse failures of a crafted cache,
the same numbers from an encoded folder, and errors only for unreadable input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from masra.errors import MasraError
from masra.priors.check import caption_batch_sizes, check_priors
from required import SHARED_DATA, require_path



def record(vid: str, captions: list, events: list[tuple[float, float, str]], *, status: str, raw: dict, errors=()):
    return {
        "vid": vid,
        "duration": 30.0,
        "clip_length": 2.0,
        "n_clips": len(captions),
        "model": "m",
        "backend": "openai",
        "prompt_version": "v1",
        "status": status,
        "captions": captions,
        "events": [{"start": s, "end": e, "description": d} for s, e, d in events],
        "raw": raw,
        "errors": list(errors),
        "created": "2026-01-01T00:00:00+00:00",
    }


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path]:
    rows = [
        record(
            "AAAAA",
            ["a man cooks", "a man eats", "a man sleeps"],
            [(0.0, 1.5, "cooking"), (1.5, 13.5, "eating and sleeping")],
            status="ok",
            raw={"captions": ['["a man cooks", "a man eats", "a man sleeps"]'], "events": "[...]"},
        ),
        record(
            "BBBBB",
            [None, "a door opens"],
            [],
            status="partial",
            raw={"captions": ["[]", '["a door opens"]'], "events": "Sorry, there is no JSON here."},
            errors=["captions request 1: the reply held no caption text", "events request: no JSON list"],
        ),
        record(
            "CCCCC",
            [None, None],
            [],
            status="failed",
            raw={"captions": [None], "events": None},
            errors=["captions request 1: gave up after 6 attempts"],
        ),
        record(
            "ZZZZZ", ["not annotated"], [(0.0, 100.0, "long")], status="ok", raw={"captions": ['["x"]'], "events": "[]"}
        ),
    ]
    rows[0]["raw"]["events"] = json.dumps(
        [{"start": s, "end": e, "description": d} for s, e, d in [(0, 1.5, "cooking")]]
    )
    rows[3]["raw"]["events"] = json.dumps([{"start": 0, "end": 100, "description": "long"}])
    cache = tmp_path / "priors.jsonl"
    cache.write_text("".join(json.dumps(r) + "\n" for r in rows))
    annotations = tmp_path / "ann.jsonl"
    annotations.write_text(
        "".join(
            json.dumps(
                {
                    "qid": q,
                    "query": "person does something.",
                    "duration": 30.0,
                    "vid": v,
                    "relevant_windows": [[1.0, 5.0]],
                }
            )
            + "\n"
            for q, v in enumerate(["AAAAA", "AAAAA", "BBBBB", "CCCCC", "DDDDD"])
        )
    )
    return cache, annotations


def test_cache_report_counts_coverage_captions_events_statuses_and_parse_failures(files, tmp_path: Path) -> None:
    cache, annotations = files
    out = tmp_path / "report" / "check.json"
    report = check_priors(priors=cache, annotations=annotations, json_out=out)

    assert report.kind == "cache"
    assert (report.annotated_videos, report.videos_with_priors, report.extra_videos) == (4, 3, 1)
    assert report.missing == ["DDDDD"] and report.coverage == pytest.approx(3 / 4)
    assert (report.clips, report.clips_with_caption) == (7, 4)
    assert report.events_per_video == {"mean": pytest.approx(2 / 3), "median": 0.0, "min": 0.0, "max": 2.0}
    assert report.videos_without_events == 2
    assert report.statuses == {"ok": 1, "partial": 1, "failed": 1}
    assert report.videos_with_errors == 2
    # AAAAA: 1 caption reply + 1 event reply, both fine; BBBBB: 2 caption replies + 1 event reply, of which
    # "[]" and the prose events reply cannot be parsed; CCCCC got no reply at all.
    assert (report.replies, report.unparsed_replies) == (5, 2)
    assert report.parse_failure_rate == pytest.approx(0.4)
    assert report.span_histogram["0-2"] == 1 and report.span_histogram["10-20"] == 1
    assert sum(report.span_histogram.values()) == 2  # ZZZZZ's 100-s event is not in the annotations

    written = json.loads(out.read_text())
    assert written["coverage"] == pytest.approx(0.75) and written["statuses"] == report.statuses

    text = str(report)
    assert "3 / 4 (75.0%)" in text and "DDDDD" in text and "2 / 5 (40.0%)" in text


def test_without_annotations_every_video_of_the_cache_counts(files) -> None:
    cache, _ = files
    report = check_priors(priors=cache)
    assert report.annotated_videos is None and report.coverage is None
    assert report.videos_with_priors == 4 and report.extra_videos == 0
    assert report.span_histogram[">=150"] == 0 and report.span_histogram["80-150"] == 1


def test_folder_report_reads_the_encoded_files(files, tmp_path: Path) -> None:
    _, annotations = files
    folder = tmp_path / "npz"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"format": "masra-priors-v1", "encoder": "minilm", "dim": 4}))
    np.savez(
        folder / "AAAAA.npz",
        clip_caption_emb=np.eye(3, 4, dtype=np.float32),
        clip_caption_valid=np.array([True, False, True]),
        event_emb=np.eye(2, 4, dtype=np.float32),
        event_spans=np.array([[0.0, 3.0], [10.0, 55.0]], dtype=np.float32),
    )
    # No valid mask: rows with non-zero norm are the captioned clips (the documented default).
    np.savez(
        folder / "BBBBB.npz",
        clip_caption_emb=np.array([[0, 0, 0, 0], [1, 0, 0, 0]], dtype=np.float32),
        event_emb=np.zeros((0, 4), np.float32),
        event_spans=np.zeros((0, 2), np.float32),
    )
    (folder / "CCCCC.npz").write_bytes(b"not a zip file")

    report = check_priors(prior_dir=folder, annotations=annotations)
    assert report.kind == "folder" and report.statuses is None and report.replies is None
    assert report.videos_with_priors == 2 and report.unreadable == ["CCCCC.npz"]
    assert (report.clips, report.clips_with_caption) == (5, 3)
    assert report.span_histogram["2-5"] == 1 and report.span_histogram["40-80"] == 1
    assert report.encoder == {"format": "masra-priors-v1", "encoder": "minilm", "dim": 4}
    assert "CCCCC.npz" in str(report)
    # A folder passed as `priors` is recognised as a folder.
    assert check_priors(priors=folder).kind == "folder"


def test_unreadable_input_is_an_error(files, tmp_path: Path) -> None:
    cache, annotations = files
    with pytest.raises(MasraError, match="not found"):
        check_priors(priors=tmp_path / "missing.jsonl", annotations=annotations)
    with pytest.raises(MasraError):
        check_priors(priors=cache, annotations=tmp_path / "missing_annotations.jsonl")
    broken = tmp_path / "broken.jsonl"
    broken.write_text(cache.read_text() + "{not json}\n" + cache.read_text())
    with pytest.raises(MasraError) as err:
        check_priors(priors=broken)
    assert err.value.line == 5
    with pytest.raises(MasraError):
        check_priors(priors=cache, prior_dir=tmp_path)


def test_coverage_against_a_real_annotation_file(files) -> None:
    cache, _ = files
    annotations = require_path(SHARED_DATA / "charades_sta" / "charades_sta_test_tvr_format.jsonl", "real annotations")
    vids = {json.loads(line)["vid"] for line in annotations.read_text().splitlines() if line.strip()}
    report = check_priors(priors=cache, annotations=annotations)
    assert report.annotated_videos == len(vids)
    assert report.videos_with_priors == 0 and report.extra_videos == 4
    assert len(report.missing) == 5 and set(report.missing) <= vids


def test_caption_batch_sizes_are_reconstructed_from_the_record() -> None:
    assert caption_batch_sizes(75, 10) == [8] * 9 + [3]  # 75 clips with --caption-batch 8
    assert caption_batch_sizes(3, 1) == [3]
    assert caption_batch_sizes(1, 1) == [1]
    assert caption_batch_sizes(4, 0) == []


def test_a_bare_sentence_parses_for_one_frame_but_not_for_several(tmp_path: Path) -> None:
    prose = "A rabbit stretches on a grassy hill."
    rows = [
        record("ONE", [prose], [], status="partial", raw={"captions": [prose], "events": None}),
        record("THREE", [None, None, None], [], status="failed", raw={"captions": [prose], "events": None}),
    ]
    cache = tmp_path / "priors.jsonl"
    cache.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = check_priors(priors=cache)
    assert (report.replies, report.unparsed_replies) == (2, 1)


def test_request_outcomes_come_from_the_record_not_from_parsing_raw_replies(files, tmp_path: Path) -> None:
    cache, _ = files
    entries = [
        {"kind": "captions", "clips": [0], "status": "ok", "attempts": 1, "asks": 1, "error": None},
        {"kind": "captions", "clips": [1], "status": "miscounted", "attempts": 4, "asks": 3, "error": "expected 1"},
        {"kind": "events", "status": "no_reply", "attempts": 6, "asks": 1, "error": "gave up after 6 attempts"},
    ]
    # Both raw caption replies would parse as one caption each: only the record says the second was miscounted.
    new = record("NEW", ["a", "b"], [], status="partial", raw={"captions": ['["a"]', '["b"]'], "events": None})
    new["requests"] = entries
    both = tmp_path / "both.jsonl"
    both.write_text(cache.read_text() + json.dumps(new) + "\n")

    report = check_priors(priors=both)
    # legacy records (re-parsed): AAAAA ok+ok, BBBBB unparsed+ok+unparsed, CCCCC no_reply, ZZZZZ ok+ok
    assert report.request_statuses == {"ok": 5 + 1, "miscounted": 1, "unparsed": 2, "no_reply": 1 + 1}
    assert report.requests == 11 and report.request_failure_rate == pytest.approx(5 / 11)
    assert (report.replies, report.unparsed_replies) == (9, 2)
    assert (report.reasked_requests, report.attempts, report.legacy_records) == (1, 11, 4)
    text = str(report)
    assert "11 (ok 6, miscounted 1, unparsed 2, no reply 2), 45.5% not ok" in text and "re-asked requests" in text


def test_the_json_report_replaces_only_an_earlier_report(files, tmp_path: Path) -> None:
    cache, _ = files
    out = tmp_path / "check.json"
    check_priors(priors=cache, json_out=out)
    check_priors(priors=cache, json_out=out)  # an earlier report is replaced
    assert json.loads(out.read_text())["videos_with_priors"] == 4
    for content in ("my notes\n", '{"something": "else"}\n'):
        other = tmp_path / "other.json"
        other.write_text(content)
        with pytest.raises(MasraError, match="not a report of `priors check`; refusing to replace it"):
            check_priors(priors=cache, json_out=other)
        assert other.read_text() == content
