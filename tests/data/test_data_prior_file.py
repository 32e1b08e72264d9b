"""The prior file format: written and read back through one module, every malformed file an error naming
file and key, nothing half-written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from masra.data.prior_file import (
    CAPTION_KEY,
    EVENT_KEY,
    SPAN_KEY,
    VALID_KEY,
    prior_path,
    read_prior_dim,
    read_prior_file,
    write_prior_file,
)
from masra.errors import MasraError


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    rows = rng.normal(size=(n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def good_arrays(dim: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    captions = unit_rows(rng, 5, dim)
    captions[3] = 0
    return {
        CAPTION_KEY: captions,
        VALID_KEY: np.array([True, True, True, False, True]),
        EVENT_KEY: unit_rows(rng, 2, dim),
        SPAN_KEY: np.array([[0.0, 4.5], [3.0, 9.0]], dtype=np.float32),
    }


def test_round_trip_keeps_every_array_and_ignores_extra_keys(tmp_path: Path) -> None:
    arrays = good_arrays()
    path = tmp_path / "out" / "v1.npz"
    write_prior_file(
        path,
        caption_emb=arrays[CAPTION_KEY],
        caption_valid=arrays[VALID_KEY],
        event_emb=arrays[EVENT_KEY],
        event_spans=arrays[SPAN_KEY],
        extra={"content_hash": np.array("abc")},
    )
    assert sorted(p.name for p in path.parent.iterdir()) == ["v1.npz"]  # no temporary file left
    with np.load(path, allow_pickle=False) as npz:
        assert npz.files == [CAPTION_KEY, VALID_KEY, EVENT_KEY, SPAN_KEY, "content_hash"]
        for key, array in arrays.items():
            np.testing.assert_array_equal(npz[key], array)
            assert npz[key].dtype == array.dtype
    prior = read_prior_file(path)
    np.testing.assert_array_equal(prior.caption_emb, arrays[CAPTION_KEY])
    np.testing.assert_array_equal(prior.caption_valid, arrays[VALID_KEY])
    np.testing.assert_array_equal(prior.event_emb, arrays[EVENT_KEY])
    np.testing.assert_array_equal(prior.event_spans, arrays[SPAN_KEY])
    assert prior.dim == read_prior_dim(path) == 4


def test_missing_valid_key_means_rows_with_non_zero_norm(tmp_path: Path) -> None:
    arrays = good_arrays()
    path = tmp_path / "v.npz"
    write_prior_file(path, caption_emb=arrays[CAPTION_KEY], event_emb=arrays[EVENT_KEY], event_spans=arrays[SPAN_KEY])
    with np.load(path) as npz:
        assert VALID_KEY not in npz.files
    assert read_prior_file(path).caption_valid.tolist() == [True, True, True, False, True]


def test_no_events_is_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "v.npz"
    write_prior_file(path, caption_emb=np.eye(3, 4, dtype=np.float32), event_emb=np.zeros((0, 4), np.float32),
                     event_spans=np.zeros((0, 2), np.float32))
    prior = read_prior_file(path)
    assert prior.event_emb.shape == (0, 4) and prior.event_spans.shape == (0, 2)


def _nan_captions(a: dict[str, np.ndarray]) -> None:
    a[CAPTION_KEY][1, 2] = np.nan


def _float64_beyond_float32(a: dict[str, np.ndarray]) -> None:
    a[EVENT_KEY] = a[EVENT_KEY].astype(np.float64)
    a[EVENT_KEY][1, 1] = 1e300


MALFORMED = {
    "captions not 2-D": (lambda a: a.update({CAPTION_KEY: a[CAPTION_KEY][0]}), CAPTION_KEY, r"expected shape \[n, dim\]"),
    "captions as text": (lambda a: a.update({CAPTION_KEY: np.array([["a", "b"]])}), CAPTION_KEY, "expected numbers"),
    "NaN in captions": (_nan_captions, CAPTION_KEY, "NaN or inf in row 1"),
    "valid of another length": (lambda a: a.update({VALID_KEY: np.ones(4, bool)}), VALID_KEY, "does not match 5"),
    "valid as text": (lambda a: a.update({VALID_KEY: np.array(["y"] * 5)}), VALID_KEY, "expected bool"),
    "event dim differs": (lambda a: a.update({EVENT_KEY: np.ones((2, 6), np.float32)}), EVENT_KEY, "differs from 4"),
    "event beyond float32": (_float64_beyond_float32, EVENT_KEY, "row 1 is beyond the float32 range"),
    "spans with 3 columns": (lambda a: a.update({SPAN_KEY: np.zeros((2, 3), np.float32)}), SPAN_KEY, r"\[n, 2\]"),
    "span count differs": (lambda a: a.update({SPAN_KEY: np.zeros((3, 2), np.float32)}), SPAN_KEY, "3 spans for 2"),
    "reversed span": (lambda a: a.update({SPAN_KEY: np.array([[0, 1], [6, 2]], np.float32)}), SPAN_KEY, "event 1: .*reversed"),
    "negative span": (lambda a: a.update({SPAN_KEY: np.array([[-1, 1], [2, 3]], np.float32)}), SPAN_KEY, "event 0: .*negative"),
    "no events key": (lambda a: a.pop(EVENT_KEY), EVENT_KEY, "missing key"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_file_names_file_and_field(tmp_path: Path, case: str) -> None:
    spoil, field, message = MALFORMED[case]
    arrays = good_arrays()
    spoil(arrays)
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(MasraError, match=message) as info:
        read_prior_file(path)
    assert (info.value.file, info.value.field) == (str(path), field)


@pytest.mark.parametrize("case", sorted(set(MALFORMED) - {"no events key"}))
def test_writer_refuses_what_the_reader_would_refuse(tmp_path: Path, case: str) -> None:
    spoil, field, message = MALFORMED[case]
    arrays = good_arrays()
    spoil(arrays)
    path = tmp_path / "bad.npz"
    with pytest.raises(MasraError, match=message) as info:
        write_prior_file(path, caption_emb=arrays[CAPTION_KEY], caption_valid=arrays[VALID_KEY],
                         event_emb=arrays[EVENT_KEY], event_spans=arrays[SPAN_KEY])
    assert (info.value.file, info.value.field) == (str(path), field)
    assert list(tmp_path.iterdir()) == []


def test_unreadable_or_pickled_files_are_errors_naming_them(tmp_path: Path) -> None:
    path = tmp_path / "junk.npz"
    path.write_bytes(b"not a zip file")
    with pytest.raises(MasraError, match="cannot read npz") as info:
        read_prior_file(path)
    assert info.value.file == str(path)
    pickled = tmp_path / "pickled.npz"
    arrays = good_arrays()
    arrays[CAPTION_KEY] = np.array([{"a": 1}], dtype=object)
    np.savez(pickled, **arrays)
    with pytest.raises(MasraError, match="cannot read npz") as info:  # never unpickled
        read_prior_file(pickled)
    assert info.value.file == str(pickled)


@pytest.mark.parametrize("vid", ["../escape", "a/b", "", ".."])
def test_vids_that_would_leave_the_folder_are_refused(tmp_path: Path, vid: str) -> None:
    with pytest.raises(MasraError, match="refusing"):
        prior_path(tmp_path, vid)
    assert prior_path(tmp_path, "video_1") == tmp_path / "video_1.npz"
