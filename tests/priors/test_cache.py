"""The prior cache: append + fsync, torn last lines, last record wins, merge, sharding."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from masra.cli.main import main
from masra.errors import MasraError
from masra.priors.cache import CacheWriter, merge_caches, read_cache, validate_record
from masra.priors.generate import parse_shard, select_jobs, shard_of
from masra.priors.videos import VideoJob


def record(vid: str, status: str = "ok", caption: str = "a caption", **extra) -> dict:
    return {
        "vid": vid, "duration": 4.0, "clip_length": 2.0, "n_clips": 2, "model": "m", "backend": "openai",
        "prompt_version": "v1", "status": status, "captions": [caption, None if status != "ok" else caption],
        "events": [{"start": 0.0, "end": 2.0, "description": "x"}], "raw": {"events": "[]", "captions": ["[]"]},
        "errors": [], "created": "2026-01-01T00:00:00+00:00", **extra,
    }


def test_writer_appends_and_reader_keeps_last_per_vid(tmp_path):
    path = tmp_path / "sub" / "priors.jsonl"
    with CacheWriter(path) as writer:
        writer.append(record("a", "partial", caption="first"))
        writer.append(record("b"))
    with CacheWriter(path) as writer:  # a second run appends
        writer.append(record("a", "ok", caption="second"))
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(x)["vid"] for x in lines] == ["a", "b", "a"]
    cache = read_cache(path)
    assert list(cache) == ["b", "a"] and cache["a"]["captions"][0] == "second" and cache["a"]["status"] == "ok"


def test_missing_file_is_an_empty_cache(tmp_path):
    assert read_cache(tmp_path / "none.jsonl") == {}


@pytest.mark.parametrize(
    "torn", [b'{"vid": "c", "dura', b'{"vid": "c"', b"{", b'{"vid": "caf\xe2\x82', b'{"vid": "c", "raw": "' + b"x" * 200_000]
)
def test_torn_last_line_is_ignored_then_repaired(tmp_path, torn):
    path = tmp_path / "priors.jsonl"
    with CacheWriter(path) as writer:
        writer.append(record("a"))
        writer.append(record("b", caption="caf\u00e9" + " long" * 30_000))  # a line longer than a read chunk
    intact = path.read_bytes()
    path.write_bytes(intact + torn)

    assert list(read_cache(path)) == ["a", "b"]
    assert path.read_bytes() == intact + torn  # reading alone changes nothing
    assert read_cache(path, repair=True)["b"]["captions"][0].startswith("caf\u00e9 long")
    assert path.read_bytes() == intact  # the fragment is cut, complete lines kept byte for byte
    with CacheWriter(path) as writer:
        writer.append(record("c"))
    assert list(read_cache(path)) == ["a", "b", "c"]


@pytest.mark.parametrize(
    "content",
    [b"my notes, no newline at the end", b"line one\nline two", json.dumps(record("a")).encode() + b"\nnot json\n{\"vid"],
)
def test_repair_never_cuts_a_file_that_is_not_a_cache(tmp_path, content):
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    with pytest.raises(MasraError):
        read_cache(path, repair=True)
    assert path.read_bytes() == content  # nothing cut


def test_corrupt_line_inside_the_file_names_the_line(tmp_path):
    path = tmp_path / "priors.jsonl"
    path.write_text(json.dumps(record("a")) + "\nnot json\n" + json.dumps(record("b")) + "\n")
    with pytest.raises(MasraError) as err:
        read_cache(path)
    assert err.value.line == 2 and str(path) in str(err.value)


@pytest.mark.parametrize(
    "field, value, reported",
    [("vid", "", "vid"), ("status", "done", "status"), ("captions", "text", "captions"),
     ("captions", [1], "captions[0]"), ("events", [{"start": 1}], "events[0].end"), ("duration", -1, "duration"),
     ("clip_length", True, "clip_length")],
)
def test_invalid_records_name_the_field(tmp_path, field, value, reported):
    path = tmp_path / "priors.jsonl"
    path.write_text(json.dumps(record("a")) + "\n" + json.dumps({**record("b"), field: value}) + "\n")
    with pytest.raises(MasraError) as err:
        read_cache(path)
    assert (err.value.line, err.value.field) == (2, reported)
    with pytest.raises(MasraError, match="missing"):
        validate_record({k: v for k, v in record("a").items() if k != field})


def test_merge_prefers_better_status_then_later_input(tmp_path, capsys):
    one, two, out = tmp_path / "one.jsonl", tmp_path / "two.jsonl", tmp_path / "merged.jsonl"
    with CacheWriter(one) as writer:
        for rec in (record("a"), record("b", "partial"), record("c", "failed"), record("d", caption="old")):
            writer.append(rec)
    with CacheWriter(two) as writer:
        for rec in (record("a", "failed"), record("b"), record("e"), record("d", caption="new")):
            writer.append(rec)
    counts = merge_caches([one, two], out)
    merged = read_cache(out)
    assert {vid: r["status"] for vid, r in merged.items()} == {"a": "ok", "b": "ok", "c": "failed", "d": "ok", "e": "ok"}
    assert merged["d"]["captions"][0] == "new"
    assert counts == {"ok": 4, "partial": 0, "failed": 1}
    assert len(out.read_text().splitlines()) == 5
    with pytest.raises(MasraError, match="file not found"):
        merge_caches([tmp_path / "nope.jsonl"], out)
    assert main(["priors", "merge", str(one), str(two), "--out", str(tmp_path / "cli.jsonl")]) == 0
    assert "5 videos" in capsys.readouterr().out


def test_merge_replaces_only_an_earlier_cache_and_only_with_force(tmp_path, capsys):
    one, out = tmp_path / "one.jsonl", tmp_path / "merged.jsonl"
    with CacheWriter(one) as writer:
        writer.append(record("a"))
    merge_caches([one], out)
    before = out.read_bytes()
    with CacheWriter(one) as writer:
        writer.append(record("b"))

    assert main(["priors", "merge", str(one), "--out", str(out)]) == 1
    assert "merged.jsonl: file exists; pass --force to replace it" in capsys.readouterr().err
    assert out.read_bytes() == before  # refused: nothing replaced
    assert main(["priors", "merge", str(one), "--out", str(out), "--force"]) == 0
    assert list(read_cache(out)) == ["a", "b"]

    notes = tmp_path / "notes.txt"  # not a prior cache: --force does not replace it either
    notes.write_text("my notes\n")
    assert main(["priors", "merge", str(one), "--out", str(notes), "--force"]) == 1
    assert "notes.txt: not a prior cache" in capsys.readouterr().err and notes.read_text() == "my notes\n"
    with pytest.raises(MasraError, match="one of the inputs"):
        merge_caches([one], one, force=True)
    assert list(read_cache(one)) == ["a", "b"]


def test_shards_are_stable_and_cover_everything():
    vids = [f"{k:05d}_{2 * k}.0_{2 * k + 150}.0" for k in range(2000)]
    shards = [shard_of(v, 4) for v in vids]
    assert shards == [shard_of(v, 4) for v in vids]  # deterministic (no per-process hash seed)
    counts = Counter(shards)
    assert set(counts) == {0, 1, 2, 3} and min(counts.values()) > 400
    assert shard_of("j7rJstUseKg_360.0_510.0", 1) == 0
    assert parse_shard("2/4") == (2, 4)
    for bad in ("4/4", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(MasraError):
            parse_shard(bad)


def test_select_jobs_skips_ok_and_applies_shard_then_limit(tmp_path):
    jobs = [VideoJob(f"v{k}", tmp_path / "x.mp4", 4.0) for k in range(20)]
    cache = {"v0": record("v0"), "v1": record("v1", "partial"), "v2": record("v2", "failed")}
    todo, skipped = select_jobs(jobs, cache, shard=None, limit=None)
    assert skipped == 1 and [j.vid for j in todo] == [f"v{k}" for k in range(1, 20)]
    todo, _ = select_jobs(jobs, cache, shard=None, limit=3)
    assert [j.vid for j in todo] == ["v1", "v2", "v3"]
    sharded, _ = select_jobs(jobs, {}, shard=(1, 3), limit=None)
    assert [j.vid for j in sharded] == [j.vid for j in jobs if shard_of(j.vid, 3) == 1]
