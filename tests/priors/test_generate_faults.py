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
from masra.priors.backends.openai_compat import OpenAICompatBackend
from masra.priors.cache import read_cache
from masra.priors.frames import clip_centres, event_times, grab_frames, jpeg_data_url, resize_short_side
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


def test_caption_count_mismatch_pads_with_null(chat_server, bikes, tmp_path):
    url, fake = chat_server
    fake.rewrite = lambda text, payload: json.dumps(json.loads(text)[:1]) if text.startswith('["') else text
    opts = options(caption_batch=2)
    out = tmp_path / "priors.jsonl"
    summary = run(url, [VideoJob("v", bikes, DURATION)], out, opts)
    captions, _ = expected_record(bikes, opts)
    record = read_cache(out)["v"]
    # batches are clips [0, 1], [2, 3], [4]: the model answered one caption per batch
    assert record["captions"] == [captions[0], None, captions[2], None, captions[4]]
    assert record["status"] == "partial" and summary.caption_count_mismatches == 2


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
    assert len(fake.payloads) - n_before == 3 * 4

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
