"""The generation pipeline against a real local HTTP server that misbehaves: the cache must come out
complete and correct (contents checked against what the frames and the fake model imply)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from conftest import digest, event_spans, make_video_dir, write_annotations

from masra.cli.main import main
from masra.errors import MasraError
from masra.priors.backends.openai_compat import OpenAICompatBackend
from masra.priors.cache import read_cache
from masra.video.frames import clip_centres, event_times, grab_frames, jpeg_data_url, resize_short_side
from masra.priors.generate import GenerateOptions, generate_priors, shard_of
from masra.priors.videos import VideoJob

DURATION = 10.0  # bikes.mp4 lasts 10 s


def options(**overrides) -> GenerateOptions:
    base = dict(clip_length=2.0, caption_batch=2, event_interval=2.0, event_frames=4, caption_short_side=96,
                event_short_side=64, concurrency=4, request_timeout=2.0, max_retries=4, backoff_base=0.01,
                show_progress=False)
    base.update(overrides)
    return GenerateOptions(**base)


def expected_record(path: Path, opts: GenerateOptions, duration: float = DURATION) -> tuple[list[str], list[dict]]:
    """The captions and events a faithful pipeline gets from the fake model for this video."""
    centres = clip_centres(duration, opts.clip_length)
    images = grab_frames(path, centres, short_side=max(opts.caption_short_side, opts.event_short_side))
    captions = [f"frame {digest(jpeg_data_url(resize_short_side(im, opts.caption_short_side)))}" for im in images]
    stamps = event_times(duration, interval=opts.event_interval, max_frames=opts.event_frames)
    stamps = [round(t, 2) for t in stamps]  # the prompt shows timestamps to 1/100 s
    events = [{"start": s, "end": min(e, duration), "description": d} for s, e, d in event_spans(stamps)]
    return captions, events


def run(server_url: str, jobs: list[VideoJob], out: Path, opts: GenerateOptions, **kw):
    backend = OpenAICompatBackend(server_url, "fake-vlm", timeout=opts.request_timeout)
    return generate_priors(jobs, backend, out, opts, **kw)


def test_faults_are_retried_and_cache_is_complete(chat_server, bikes, tmp_path):
    url, fake = chat_server
    fake.faults = ["slow", "500", "429", "malformed", "truncated", "500"]
    fake.slow_seconds = 1.5
    opts = options(request_timeout=0.6)
    jobs = [VideoJob(f"vid{k}", bikes, DURATION) for k in range(3)]
    out = tmp_path / "priors.jsonl"
    summary = run(url, jobs, out, opts)

    captions, events = expected_record(bikes, opts)
    cache = read_cache(out)
    assert sorted(cache) == ["vid0", "vid1", "vid2"]
    assert len(out.read_text().splitlines()) == 3  # one record per video, nothing duplicated
    for record in cache.values():
        assert record["status"] == "ok", record["errors"]
        assert record["captions"] == captions
        assert record["events"] == events
        assert record["errors"] == []
        assert record["model"] == "fake-vlm" and record["backend"] == "openai"
        assert record["n_clips"] == len(captions) == 5
        assert len(record["raw"]["captions"]) == 3 and json.loads(record["raw"]["events"])
    assert summary.ok == 3 and summary.retries >= 6 and summary.failed_requests == 0
    # every request that reached the server: 3 caption batches + 1 event request per video, plus the retries
    assert summary.requests == len(fake.payloads) == 3 * 4 + summary.retries
    assert summary.prompt_tokens == 100 * (3 * 4)  # usage counted for successful replies only


def test_retry_after_is_honoured(chat_server, bikes, tmp_path):
    url, fake = chat_server
    fake.faults, fake.retry_after = ["429"], "1"
    out = tmp_path / "priors.jsonl"
    started = time.monotonic()
    # back-off without Retry-After would be at most 0.01 s here
    summary = run(url, [VideoJob("v", bikes, 4.0)], out, options(backoff_base=0.01, caption_batch=8))
    assert time.monotonic() - started >= 1.0
    assert summary.retries == 1 and read_cache(out)["v"]["status"] == "ok"


def test_requests_that_keep_failing_are_recorded(chat_server, bikes, tmp_path):
    url, fake = chat_server
    fake.faults = ["500"] * 100
    out = tmp_path / "priors.jsonl"
    summary = run(url, [VideoJob("v", bikes, 4.0)], out, options(max_retries=1, caption_batch=1))
    record = read_cache(out)["v"]
    assert record["status"] == "failed" and record["captions"] == [None, None] and record["events"] == []
    assert record["raw"] == {"events": None, "captions": [None, None]}
    assert len(record["errors"]) == 3 and all("gave up after 2 attempts: HTTP 500" in e for e in record["errors"])
    assert (summary.requests, summary.retries, summary.failed_requests, summary.failed) == (6, 3, 3, 1)


REWRITES = {
    "prose": lambda text, payload: f"Sure! Here is the answer:\n{text}\nHope this helps.",
    "fences": lambda text, payload: f"```json\n{text}\n```",
}


@pytest.mark.parametrize("style", sorted(REWRITES))
def test_replies_in_prose_or_fences_are_parsed(chat_server, bikes, tmp_path, style):
    url, fake = chat_server
    fake.rewrite = REWRITES[style]
    opts = options()
    out = tmp_path / "priors.jsonl"
    run(url, [VideoJob("v", bikes, DURATION)], out, opts)
    captions, events = expected_record(bikes, opts)
    record = read_cache(out)["v"]
    assert (record["status"], record["captions"], record["events"]) == ("ok", captions, events)


def test_clock_times_and_reversed_spans(chat_server, bikes, tmp_path):
    url, fake = chat_server

    def clock_and_reversed(text: str, payload: dict) -> str:
        obj = json.loads(text)
        if obj and isinstance(obj[0], dict):  # the event reply: mm:ss strings, the end first
            return json.dumps([{"start": f"{int(e['end']) // 60:02d}:{e['end'] % 60:05.2f}",
                                "end": f"00:{e['start']:05.2f}", "description": e["description"]} for e in obj])
        return text

    fake.rewrite = clock_and_reversed
    opts = options()
    out = tmp_path / "priors.jsonl"
    run(url, [VideoJob("v", bikes, DURATION)], out, opts)
    _, events = expected_record(bikes, opts)
    assert read_cache(out)["v"]["events"] == events


def test_unparseable_reply_is_kept_raw_and_counted(chat_server, bikes, tmp_path):
    url, fake = chat_server
    fake.rewrite = lambda text, payload: text if text.startswith('["') else "I cannot tell what happens."
    out = tmp_path / "priors.jsonl"
    summary = run(url, [VideoJob("v", bikes, DURATION)], out, options())
    record = read_cache(out)["v"]
    assert record["status"] == "partial"
    assert record["raw"]["events"] == "I cannot tell what happens."
    assert record["events"] == [] and all(record["captions"])
    assert any(e.startswith("events request: no JSON list") for e in record["errors"])
    assert summary.unparsed_replies == 1 and summary.partial == 1


def caption_texts(payload: dict) -> list[str]:
    return [p["text"] for p in payload["messages"][0]["content"] if p["type"] == "text"]


def test_a_miscounting_model_is_reasked_with_the_count_then_padded_with_null(chat_server, bikes, tmp_path):
    url, fake = chat_server
    fake.rewrite = lambda text, payload: json.dumps(json.loads(text)[:1]) if text.startswith('["') else text
    opts = options(caption_batch=2, max_retries=2)
    out = tmp_path / "priors.jsonl"
    summary = run(url, [VideoJob("v", bikes, DURATION)], out, opts)
    captions, _ = expected_record(bikes, opts)
    record = read_cache(out)["v"]
    # batches are clips [0, 1], [2, 3], [4]: the model answers one caption per batch, every time it is asked
    assert record["captions"] == [captions[0], None, captions[2], None, captions[4]]
    assert record["status"] == "partial"
    statuses = [(e["kind"], e.get("clips"), e["status"], e["asks"], e["attempts"]) for e in record["requests"]]
    assert statuses == [("captions", [0, 1], "miscounted", 3, 3), ("captions", [2, 3], "miscounted", 3, 3),
                        ("captions", [4], "ok", 1, 1), ("events", None, "ok", 1, 1)]
    assert "captions request 1: expected 2 captions, got 1 usable (asked 3 times)" in record["errors"]
    assert (summary.reasks, summary.caption_count_mismatches, summary.requests) == (4, 6, 2 * 3 + 1 + 1)
    reasks = [p for p in fake.payloads if any(t.startswith("Your previous answer") for t in caption_texts(p))]
    assert len(reasks) == 4
    assert all("gave 1 usable captions, but there are 2 frames" in caption_texts(p)[-1] for p in reasks)


def test_a_reask_that_gets_the_count_right_completes_the_video(chat_server, bikes, tmp_path):
    url, fake = chat_server

    def miscount_unless_reminded(text: str, payload: dict) -> str:
        reminded = any(t.startswith("Your previous answer") for t in caption_texts(payload))
        return text if reminded or not text.startswith('["') else json.dumps(json.loads(text) * 2)  # one too many

    fake.rewrite = miscount_unless_reminded
    opts = options(caption_batch=2, max_retries=1)
    out = tmp_path / "priors.jsonl"
    summary = run(url, [VideoJob("v", bikes, DURATION)], out, opts)
    captions, events = expected_record(bikes, opts)
    record = read_cache(out)["v"]
    assert (record["status"], record["captions"], record["events"], record["errors"]) == ("ok", captions, events, [])
    assert [(e["status"], e["asks"]) for e in record["requests"]] == [("ok", 2)] * 3 + [("ok", 1)]
    assert summary.reasks == 3 and summary.ok == 1
    # the raw reply kept is the one the captions came from
    assert [json.loads(r) for r in record["raw"]["captions"]] == [captions[0:2], captions[2:4], captions[4:]]


def test_reasks_are_off_with_max_retries_zero(chat_server, bikes, tmp_path):
    url, fake = chat_server
    fake.rewrite = lambda text, payload: "I see frames." if text.startswith('["') else text
    out = tmp_path / "priors.jsonl"
    summary = run(url, [VideoJob("v", bikes, 4.0)], out, options(caption_batch=2, max_retries=0))
    record = read_cache(out)["v"]
    assert [e["status"] for e in record["requests"]] == ["unparsed", "ok"]
    assert summary.reasks == 0 and summary.requests == 2 and summary.unparsed_replies == 1


@pytest.mark.parametrize("status, hint", [("401", "authentication failed"), ("404", "check --base-url")])
def test_auth_or_missing_model_stops_the_run(chat_server, bikes, tmp_path, status, hint):
    url, fake = chat_server
    out = tmp_path / "priors.jsonl"
    first = run(url, [VideoJob("done", bikes, DURATION)], out, options())
    assert first.ok == 1
    fake.faults = [status] * 100
    jobs = [VideoJob(f"v{k}", bikes, DURATION) for k in range(4)]
    summary = run(url, jobs, out, options())
    assert summary.stopped is not None and f"HTTP {status}" in summary.stopped and hint in summary.stopped
    assert summary.retries == 0 and summary.videos == 0
    assert list(read_cache(out)) == ["done"]  # the finished video is intact, nothing half-written


def test_fatal_error_from_cli_is_a_clear_message(chat_server, bikes, tmp_path, capsys):
    url, fake = chat_server
    fake.faults = ["404"] * 100
    videos = make_video_dir(tmp_path, ["a"], bikes)
    ann = write_annotations(tmp_path / "ann.jsonl", {"a": DURATION})
    code = main(["priors", "generate", "--videos", str(videos), "--annotations", str(ann), "--out",
                 str(tmp_path / "p.jsonl"), "--base-url", url, "--model", "nope", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert "HTTP 404" in err and "does not exist" in err and "rerun the same command to resume" in err


def test_decode_failure_is_recorded(chat_server, bikes, damaged_copy, tmp_path):
    url, fake = chat_server
    out = tmp_path / "priors.jsonl"
    summary = run(url, [VideoJob("bad", damaged_copy, DURATION), VideoJob("good", bikes, DURATION)], out, options())
    cache = read_cache(out)
    assert cache["good"]["status"] == "ok"
    bad = cache["bad"]
    assert bad["status"] in ("failed", "partial")
    assert any(e.startswith(("decode:", "frames:")) for e in bad["errors"])
    if bad["status"] == "failed":
        assert bad["captions"] == [None] * 5 and bad["events"] == []
    assert summary.failed + summary.partial == 1


def test_resume_skips_ok_and_redoes_partial(chat_server, bikes, tmp_path):
    url, fake = chat_server
    out = tmp_path / "priors.jsonl"
    fake.rewrite = lambda text, payload: "no idea" if '"start"' in text else text
    jobs = [VideoJob(f"v{k}", bikes, DURATION) for k in range(2)]
    run(url, jobs, out, options())
    assert {r["status"] for r in read_cache(out).values()} == {"partial"}

    fake.rewrite = lambda text, payload: text
    n_before = len(fake.payloads)
    summary = run(url, jobs + [VideoJob("v2", bikes, DURATION)], out, options())
    assert summary.videos == 3 and summary.ok == 3 and summary.skipped == 0
    # the partial videos only redo their events request; v2 is new: 3 caption requests and 1 events request
    assert len(fake.payloads) - n_before == 2 * 1 + 4
    assert (summary.resumed, summary.kept_requests) == (2, 2 * 3)

    again = run(url, jobs + [VideoJob("v2", bikes, DURATION)], out, options())
    assert again.videos == 0 and again.skipped == 3
    lines = [json.loads(x) for x in out.read_text().splitlines()]  # the partial records stay, new ones follow
    assert sorted((r["vid"], r["status"]) for r in lines[:2]) == [("v0", "partial"), ("v1", "partial")]
    assert sorted((r["vid"], r["status"]) for r in lines[2:]) == [("v0", "ok"), ("v1", "ok"), ("v2", "ok")]
    assert all(r["status"] == "ok" for r in read_cache(out).values())


def test_shards_partition_the_videos(chat_server, bikes, tmp_path):
    url, fake = chat_server
    jobs = [VideoJob(f"video_{k}", bikes, 4.0) for k in range(6)]
    outs = [tmp_path / f"shard{i}.jsonl" for i in range(2)]
    for i, out in enumerate(outs):
        run(url, jobs, out, options(), shard=(i, 2))
    seen = [set(read_cache(out)) for out in outs]
    assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == {j.vid for j in jobs}
    assert all(shard_of(vid, 2) == i for i, vids in enumerate(seen) for vid in vids)

    merged = tmp_path / "merged.jsonl"
    assert main(["priors", "merge", str(outs[0]), str(outs[1]), "--out", str(merged)]) == 0
    assert set(read_cache(merged)) == {j.vid for j in jobs}


def test_cli_end_to_end_text_only(chat_server, bikes, tmp_path, monkeypatch, capsys):
    url, fake = chat_server
    monkeypatch.setenv("MY_KEY", "secret-123")
    videos = make_video_dir(tmp_path, ["a", "b"], bikes)
    ann = write_annotations(tmp_path / "ann.jsonl", {"a": DURATION, "b": 6.0, "absent": 8.0})
    out = tmp_path / "p.jsonl"
    code = main(["priors", "generate", "--videos", str(videos), "--annotations", str(ann), "--out", str(out),
                 "--base-url", url, "--model", "m", "--api-key-env", "MY_KEY", "--text-only", "--caption-batch", "3",
                 "--event-frames", "2", "--no-progress", "--limit", "5"])
    assert code == 0
    assert "2 processed (2 ok" in capsys.readouterr().out
    cache = read_cache(out)
    assert sorted(cache) == ["a", "b"]
    # these rows look like Charades-STA, so clips last 1 s; text-only: no image parts were sent, so the
    # fake model numbered the frames of each batch of 3
    assert cache["a"]["captions"] == [f"frame {k % 3 + 1}" for k in range(10)]
    assert cache["b"]["n_clips"] == 6 and cache["b"]["clip_length"] == 1.0
    assert all(isinstance(p["messages"][0]["content"], str) for p in fake.payloads)
    assert all(h.get("Authorization") == "Bearer secret-123" for h in fake.headers)
    stamps = [float(x) for x in re.findall(r"\[(\d+\.\d) s\]", fake.payloads[-1]["messages"][0]["content"])]
    assert len(stamps) in (0, 2)


def partial_first_run(url: str, fake, bikes: Path, out: Path, vids: list[str]):
    """One run against a model that gives one caption for the batch of clips 2 and 3 and no readable
    events, so every video ends partial; then the model is honest again. Returns (options, captions, events)."""
    opts = options(caption_batch=2, max_retries=0)
    captions, events = expected_record(bikes, opts)

    def rewrite(text: str, payload: dict) -> str:
        if '"start"' in text:
            return "no idea"
        return json.dumps(captions[2:3]) if json.loads(text) == captions[2:4] else text

    fake.rewrite = rewrite
    run(url, [VideoJob(vid, bikes, DURATION) for vid in vids], out, opts)
    fake.rewrite = lambda text, payload: text
    return opts, captions, events


def test_resume_asks_only_the_unfinished_requests_of_a_partial_video(chat_server, bikes, tmp_path):
    url, fake = chat_server
    out = tmp_path / "priors.jsonl"
    opts, captions, events = partial_first_run(url, fake, bikes, out, ["v"])
    first = read_cache(out)["v"]
    assert first["status"] == "partial" and first["captions"] == [*captions[:3], None, captions[4]]
    assert [e["status"] for e in first["requests"]] == ["ok", "miscounted", "ok", "unparsed"]

    n_before = len(fake.payloads)
    summary = run(url, [VideoJob("v", bikes, DURATION)], out, opts)
    sent = fake.payloads[n_before:]
    assert len(sent) == 2  # the miscounted caption request and the events request, nothing else
    (caption_request,) = [p for p in sent if "Frame 1:" in caption_texts(p)]
    images = [p["image_url"]["url"] for p in caption_request["messages"][0]["content"] if p["type"] == "image_url"]
    assert [f"frame {digest(u)}" for u in images] == captions[2:4]  # the frames of clips 2 and 3
    second = read_cache(out)["v"]
    assert (second["status"], second["captions"], second["events"], second["errors"]) == ("ok", captions, events, [])
    kept = [first["requests"][0], first["requests"][2]]
    assert [second["requests"][0], second["requests"][2]] == kept  # the finished requests, as they were
    assert second["raw"]["captions"][0] == first["raw"]["captions"][0]
    assert (summary.resumed, summary.kept_requests, summary.ok) == (1, 2, 1)


def test_a_redo_that_comes_back_worse_keeps_what_came_back_before(chat_server, bikes, tmp_path):
    url, fake = chat_server
    out = tmp_path / "priors.jsonl"
    opts, _, _ = partial_first_run(url, fake, bikes, out, ["v"])
    first = read_cache(out)["v"]

    fake.faults = ["500"] * 100  # every redo gets no reply
    summary = run(url, [VideoJob("v", bikes, DURATION)], out, opts)
    second = read_cache(out)["v"]
    assert summary.failed_requests == 2 and second["status"] == "partial"
    assert second["captions"] == first["captions"]  # the miscounted batch's caption of clip 2 is kept
    assert second["requests"] == first["requests"] and second["raw"] == first["raw"]


def test_a_partial_record_from_another_model_or_without_request_entries_is_redone_whole(chat_server, bikes, tmp_path):
    url, fake = chat_server
    out = tmp_path / "priors.jsonl"
    opts, _, _ = partial_first_run(url, fake, bikes, out, ["a", "b"])
    records = [json.loads(line) for line in out.read_text().splitlines()]
    for rec in records:  # "a" was made by another model; "b" predates request entries (prompt v1)
        if rec["vid"] == "a":
            rec["model"] = "another-model"
        else:
            del rec["requests"]
            rec["prompt_version"] = "v1"
    out.write_text("".join(json.dumps(rec) + "\n" for rec in records))

    n_before = len(fake.payloads)
    summary = run(url, [VideoJob("a", bikes, DURATION), VideoJob("b", bikes, DURATION)], out, opts)
    assert len(fake.payloads) - n_before == 2 * 4 and summary.resumed == 0 and summary.ok == 2


def test_generate_cli_defaults_are_the_generate_options_defaults():
    from masra.cli.main import build_parser
    from masra.cli.priors import generate_options

    def parsed(*extra: str):
        args = build_parser().parse_args(["priors", "generate", "--videos", "v", "--annotations", "a", "--out", "o",
                                          *extra])
        return generate_options(args, clip_length=2.0)

    assert parsed() == GenerateOptions(clip_length=2.0)
    assert parsed("--timeout", "5", "--short-side", "224") == GenerateOptions(
        clip_length=2.0, request_timeout=5.0, caption_short_side=224)
    assert parsed("--backend", "transformers").request_timeout is None


@pytest.mark.parametrize("clip_length", [float("nan"), float("inf"), 1e-9, 0.0])
def test_clip_length_is_held_to_the_frame_readers_limit(clip_length):
    with pytest.raises(MasraError, match=r"field 'clip_length': must be a finite number of seconds >= 0.1"):
        GenerateOptions(clip_length=clip_length)
