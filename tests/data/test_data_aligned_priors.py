"""Prior files aligned to a video's clips: truncation, span conversion, dropped events, errors, coverage."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest

from masra.data.aligned_priors import PriorLoader, event_clip_spans, prior_dim
from masra.errors import MasraError


def write_prior(folder: Path, vid: str, n_captions: int, spans: list[list[float]], dim: int = 4, **extra: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(vid) + n_captions)
    arrays = {
        "clip_caption_emb": rng.normal(size=(n_captions, dim)).astype(np.float32),
        "event_emb": rng.normal(size=(len(spans), dim)).astype(np.float32),
        "event_spans": np.asarray(spans, dtype=np.float32).reshape(-1, 2),
        **extra,
    }
    path = folder / f"{vid}.npz"
    np.savez(path, **arrays)
    return path


def test_event_spans_to_inclusive_clip_indices() -> None:
    spans_s = np.array([[0.0, 4.0], [3.0, 5.0], [7.9, 8.0], [10.0, 30.0], [25.0, 26.0], [6.0, 6.0]])
    clip_length, n_clips = 2.0, 12
    clips, kept = event_clip_spans(spans_s, clip_length, n_clips)
    expected = []
    for s, e in spans_s:
        first = math.floor(s / clip_length)
        last = max(min(math.ceil(e / clip_length), n_clips) - 1, first)
        if first < n_clips:
            expected.append([first, last])
    assert clips.tolist() == expected
    assert kept.tolist() == [True, True, True, True, False, True]
    assert clips.tolist()[2] == [3, 3] and clips.tolist()[3] == [5, 11]


def test_load_aligns_captions_and_events(tmp_path: Path) -> None:
    path = write_prior(tmp_path, "v1", n_captions=11, spans=[[0, 4], [18, 30], [40, 50]])
    loader = PriorLoader(tmp_path, clip_length=2.0)
    priors = loader.load("v1", n_clips=10)
    assert priors is not None
    with np.load(path) as raw:
        np.testing.assert_array_equal(priors.caption_emb, raw["clip_caption_emb"][:10])
        np.testing.assert_array_equal(priors.event_emb, raw["event_emb"][:2])
    assert priors.caption_valid.all()
    assert priors.event_spans.tolist() == [[0, 1], [9, 9]]
    assert priors.dropped_events == 1
    # fewer captions than clips (within tolerance): padded with invalid rows
    write_prior(tmp_path, "v2", n_captions=9, spans=[])
    short = loader.load("v2", n_clips=10)
    assert short.caption_emb.shape == (10, 4) and short.caption_valid.tolist() == [True] * 9 + [False]
    assert short.event_emb.shape == (0, 4) and short.event_spans.shape == (0, 2)
    assert loader.load("absent", n_clips=10) is None


def test_caption_validity_from_key_or_nonzero_rows(tmp_path: Path) -> None:
    captions = np.ones((4, 3), dtype=np.float32)
    captions[2] = 0
    np.savez(tmp_path / "zero.npz", clip_caption_emb=captions, event_emb=np.zeros((0, 3)), event_spans=np.zeros((0, 2)))
    loader = PriorLoader(tmp_path, 1.0)
    assert loader.load("zero", 4).caption_valid.tolist() == [True, True, False, True]
    valid = np.array([True, False, True, True])
    np.savez(tmp_path / "flag.npz", clip_caption_emb=np.ones((4, 3)), clip_caption_valid=valid,
             event_emb=np.zeros((0, 3)), event_spans=np.zeros((0, 2)))
    assert loader.load("flag", 4).caption_valid.tolist() == valid.tolist()


def test_prior_errors_name_file_and_field(tmp_path: Path) -> None:
    loader = PriorLoader(tmp_path, 2.0)
    path = write_prior(tmp_path, "long", n_captions=30, spans=[])
    with pytest.raises(MasraError) as info:
        loader.load("long", 10)
    assert (info.value.file, info.value.field) == (str(path), "clip_caption_emb")

    captions = np.ones((5, 4), dtype=np.float32)
    captions[1, 2] = np.nan
    path = write_prior(tmp_path, "nan", n_captions=5, spans=[], clip_caption_emb=captions)
    with pytest.raises(MasraError, match="NaN") as info:
        loader.load("nan", 5)
    assert info.value.file == str(path)

    write_prior(tmp_path, "d4", n_captions=5, spans=[], dim=4)
    path = write_prior(tmp_path, "d6", n_captions=5, spans=[], dim=6)
    loader.load("d4", 5)
    with pytest.raises(MasraError, match="differs from 4") as info:
        loader.load("d6", 5)
    assert info.value.file == str(path)

    write_prior(tmp_path, "rev", n_captions=5, spans=[[6.0, 2.0]])
    with pytest.raises(MasraError, match="reversed") as info:
        loader.load("rev", 5)
    assert info.value.field == "event_spans"

    np.savez(tmp_path / "nokey.npz", clip_caption_emb=np.ones((5, 4)))
    with pytest.raises(MasraError) as info:
        loader.load("nokey", 5)
    assert info.value.field == "event_emb"

    with pytest.raises(MasraError, match="refusing"):
        loader.load("../x", 5)


def test_coverage_warns_with_the_fraction(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_prior(tmp_path, "a", 3, [])
    loader = PriorLoader(tmp_path, 2.0)
    with caplog.at_level(logging.WARNING):
        assert loader.coverage(["a", "b", "a", "c", "d"]) == pytest.approx(0.25)
    assert "1 of 4 videos (25.0%)" in caplog.text
    assert prior_dim(tmp_path) == 4


@pytest.mark.parametrize("key", ["clip_caption_emb", "event_emb", "event_spans"])
def test_prior_values_beyond_float32_range_are_errors(tmp_path: Path, key: str) -> None:
    path = write_prior(tmp_path, "v", n_captions=5, spans=[[0.0, 2.0], [4.0, 6.0]])
    with np.load(path) as npz:
        arrays = {k: npz[k].astype(np.float64) for k in npz.files}
    arrays[key][1, 1] = 1e300  # finite in the file, inf as float32
    np.savez(path, **arrays)
    with pytest.raises(MasraError, match="row 1 is beyond the float32 range") as info:
        PriorLoader(tmp_path, 2.0).load("v", 5)
    assert (info.value.file, info.value.field) == (str(path), key)


def test_corrupt_prior_file_is_an_error_naming_it(tmp_path: Path) -> None:
    from test_data_features import corrupt_compressed_npz

    path = corrupt_compressed_npz(tmp_path / "v.npz", key="clip_caption_emb")
    with pytest.raises(MasraError, match="cannot read npz") as info:
        PriorLoader(tmp_path, 2.0).load("v", 5)
    assert info.value.file == str(path)
