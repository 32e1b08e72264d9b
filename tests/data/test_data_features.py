"""Feature loading vs a numpy re-implementation of the anchors' formula, and every error it raises."""

from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from masra.config import DataConfig
from masra.data.features import FeatureLoader, length_tolerance
from masra.data.paths import child_path
from masra.errors import MasraError


def anchor_video(sources: list[np.ndarray], max_v_l: int, normalize: bool = True) -> np.ndarray:
    """moment_detr start_end_dataset._get_video_feat_by_vid + TEF, written from the anchors' loader."""
    feats = []
    for x in sources:
        x = x[:max_v_l].astype(np.float32)
        if normalize:
            x = x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-5)
        feats.append(x)
    n = min(len(f) for f in feats)
    video = np.concatenate([f[:n] for f in feats], axis=1)
    tef_st = np.arange(0, n, 1.0, dtype=np.float32) / n
    return np.concatenate([video, np.stack([tef_st, tef_st + 1.0 / n], axis=1)], axis=1)


def write_npz(folder: Path, name: str, **arrays: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.npz"
    np.savez(path, **arrays)
    return path


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def make_cfg(tmp_path: Path, **changes: object) -> DataConfig:
    cfg = DataConfig(v_feat_dirs=[str(tmp_path / "slowfast"), str(tmp_path / "clip")], t_feat_dir=str(tmp_path / "text"))
    for key, value in changes.items():
        setattr(cfg, key, value)
    for folder in [*cfg.v_feat_dirs, cfg.t_feat_dir]:
        Path(folder).mkdir(parents=True, exist_ok=True)
    return cfg


def test_video_matches_anchor_formula_and_order(tmp_path: Path, rng: np.random.Generator) -> None:
    cfg = make_cfg(tmp_path, max_v_l=6)
    slowfast = rng.normal(size=(8, 5)).astype(np.float16)  # non-float32 on disk: cast after truncation
    clip = rng.normal(size=(7, 3)).astype(np.float32) * 10
    write_npz(tmp_path / "slowfast", "vid_a", features=slowfast)
    write_npz(tmp_path / "clip", "vid_a", features=clip)
    video = FeatureLoader(cfg).video("vid_a")
    expected = anchor_video([slowfast, clip], max_v_l=6)
    assert video.dtype == np.float32 and video.shape == (6, 5 + 3 + 2)
    np.testing.assert_allclose(video, expected, rtol=1e-6, atol=1e-7)
    # the configured order decides the layout: swapping the folders swaps the blocks
    swapped = FeatureLoader(make_cfg(tmp_path, max_v_l=6, v_feat_dirs=cfg.v_feat_dirs[::-1])).video("vid_a")
    np.testing.assert_allclose(swapped, anchor_video([clip, slowfast], max_v_l=6), rtol=1e-6, atol=1e-7)
    assert np.linalg.norm(video[:, :5], axis=1) == pytest.approx(np.ones(6), abs=1e-4)


def test_flags_disable_normalisation_and_tef(tmp_path: Path, rng: np.random.Generator) -> None:
    cfg = make_cfg(tmp_path, max_v_l=-1, use_tef=False, normalize_video=False, normalize_text=False)
    a, b = rng.normal(size=(9, 4)), rng.normal(size=(9, 2))
    write_npz(tmp_path / "slowfast", "v", features=a)
    write_npz(tmp_path / "clip", "v", features=b)
    tokens = rng.normal(size=(40, 3))
    write_npz(tmp_path / "text", "qid5", last_hidden_state=tokens, pooler_output=tokens[0])
    loader = FeatureLoader(cfg)
    np.testing.assert_array_equal(loader.video("v"), np.concatenate([a, b], axis=1).astype(np.float32))
    cfg.max_q_l = 32
    np.testing.assert_array_equal(loader.text(5), tokens[:32].astype(np.float32))


def test_text_truncation_normalisation_and_prefix(tmp_path: Path, rng: np.random.Generator) -> None:
    tokens = rng.normal(size=(40, 3))
    cfg = make_cfg(tmp_path, max_q_l=32)
    write_npz(tmp_path / "text", "qid12", last_hidden_state=tokens)
    expected = tokens[:32].astype(np.float32)
    expected = expected / (np.linalg.norm(expected, axis=-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(FeatureLoader(cfg).text(12), expected, rtol=1e-6)
    cfg_tacos = make_cfg(tmp_path, t_feat_prefix="", max_q_l=-1)
    write_npz(tmp_path / "text", "s17-d69_0", last_hidden_state=tokens)
    assert FeatureLoader(cfg_tacos).text("s17-d69_0").shape == (40, 3)
    cfg_pooler = make_cfg(tmp_path, t_feat_key="pooler_output")
    write_npz(tmp_path / "text", "qid13", pooler_output=tokens[0])
    assert FeatureLoader(cfg_pooler).text(13).shape == (1, 3)


def test_npy_fallback_and_tvsum_rgb_opt_pair(tmp_path: Path, rng: np.random.Generator) -> None:
    cfg = make_cfg(tmp_path, v_feat_dirs=[str(tmp_path / "i3d")])
    raw = rng.normal(size=(5, 4))
    np.save(tmp_path / "i3d" / "plain.npy", raw)
    np.testing.assert_allclose(FeatureLoader(cfg).video("plain"), anchor_video([raw], 75), rtol=1e-6)
    rgb, opt = rng.normal(size=(6, 2)), rng.normal(size=(6, 3))
    np.save(tmp_path / "i3d" / "tv_rgb.npy", rgb)
    np.save(tmp_path / "i3d" / "tv_opt.npy", opt)
    np.testing.assert_allclose(
        FeatureLoader(cfg).video("tv"), anchor_video([np.concatenate([rgb, opt], axis=1)], 75), rtol=1e-6
    )


def test_sources_trimmed_to_shortest_within_tolerance(tmp_path: Path, rng: np.random.Generator) -> None:
    cfg = make_cfg(tmp_path, max_v_l=-1)
    write_npz(tmp_path / "slowfast", "v", features=rng.normal(size=(40, 3)))
    write_npz(tmp_path / "clip", "v", features=rng.normal(size=(38, 3)))
    assert FeatureLoader(cfg).video("v").shape[0] == 38
    write_npz(tmp_path / "clip", "w", features=rng.normal(size=(40 - length_tolerance(40) - 1, 3)))
    write_npz(tmp_path / "slowfast", "w", features=rng.normal(size=(40, 3)))
    with pytest.raises(MasraError, match="differ in length"):
        FeatureLoader(cfg).video("w")


def _error(cfg: DataConfig, vid: str) -> MasraError:
    with pytest.raises(MasraError) as info:
        FeatureLoader(cfg).video(vid)
    return info.value


def test_feature_errors_name_the_file(tmp_path: Path, rng: np.random.Generator) -> None:
    cfg = make_cfg(tmp_path, v_feat_dirs=[str(tmp_path / "clip")])
    folder = tmp_path / "clip"
    assert "no video features for vid 'missing'" in str(_error(cfg, "missing"))

    path = write_npz(folder, "nokey", other=np.ones((3, 2)))
    err = _error(cfg, "nokey")
    assert err.file == str(path) and err.field == "features" and "keys in the file: other" in err.message

    write_npz(folder, "ndim", features=np.ones((3, 2, 2)))
    assert "expected a 2-D array" in str(_error(cfg, "ndim"))

    write_npz(folder, "empty", features=np.ones((0, 4)))
    assert "empty array" in str(_error(cfg, "empty"))

    bad = rng.normal(size=(5, 4))
    bad[3, 1] = np.nan
    path = write_npz(folder, "nan", features=bad)
    err = _error(cfg, "nan")
    assert err.file == str(path) and "row 3" in err.message

    (folder / "corrupt.npz").write_bytes(b"not a zip archive")
    assert "cannot read npz" in str(_error(cfg, "corrupt"))

    loader = FeatureLoader(cfg)
    write_npz(folder, "dim4", features=np.ones((3, 4)))
    write_npz(folder, "dim5", features=np.ones((3, 5)))
    loader.video("dim4")
    with pytest.raises(MasraError, match="dim 5 differs from 4"):
        loader.video("dim5")

    with pytest.raises(MasraError, match="the model takes 7"):
        FeatureLoader(cfg, video_dim=7).video("dim4")
    write_npz(tmp_path / "text", "qid12", last_hidden_state=np.ones((3, 4)))
    with pytest.raises(MasraError, match="differs from the expected text dim 9"):
        FeatureLoader(cfg, text_dim=9).text(12)


def test_missing_text_file_names_the_expected_path(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    with pytest.raises(MasraError) as info:
        FeatureLoader(cfg).text(99)
    assert info.value.file == str(tmp_path / "text" / "qid99.npz")


@pytest.mark.parametrize("name", ["../escape", "/etc/passwd", "..", ".", "", "a/b", "a\\b", "x\x00y"])
def test_names_that_would_leave_the_folder_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(MasraError, match="refusing file name"):
        child_path(tmp_path, name, ".npz")
    cfg = make_cfg(tmp_path)
    with pytest.raises(MasraError, match="refusing file name"):
        FeatureLoader(cfg).video(name)


def test_symlink_that_resolves_outside_is_refused(tmp_path: Path) -> None:
    (tmp_path / "inside").mkdir()
    (tmp_path / "inside" / "link.npz").symlink_to(tmp_path / "outside.npz")
    with pytest.raises(MasraError, match="resolves outside"):
        child_path(tmp_path / "inside", "link", ".npz")


def corrupt_compressed_npz(path: Path, key: str = "features") -> Path:
    """A ``savez_compressed`` file whose deflate stream is damaged but whose zip directory is intact."""
    np.savez_compressed(path, **{key: np.tile(np.arange(64, dtype=np.float32), (50, 1))})
    with zipfile.ZipFile(path) as archive:
        member = archive.infolist()[0]
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[member.header_offset + 26 : member.header_offset + 30])
    data[member.header_offset + 30 + name_len + extra_len] ^= 0x55  # first byte of the deflate stream
    path.write_bytes(bytes(data))
    with pytest.raises(zlib.error), np.load(path) as npz:  # the raw failure this file provokes
        npz[key]
    return path


def test_corrupt_compressed_npz_is_an_error_naming_the_file(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, v_feat_dirs=[str(tmp_path / "clip")])
    path = corrupt_compressed_npz(tmp_path / "clip" / "bad.npz")
    err = _error(cfg, "bad")
    assert err.file == str(path) and "cannot read npz" in err.message


@pytest.mark.parametrize("kind", ["video", "text"])
def test_zero_dimensional_array_is_an_error_naming_the_file(tmp_path: Path, kind: str) -> None:
    cfg = make_cfg(tmp_path, v_feat_dirs=[str(tmp_path / "clip")])
    loader = FeatureLoader(cfg)
    with pytest.raises(MasraError) as info:
        if kind == "video":
            path = write_npz(tmp_path / "clip", "scalar", features=np.float32(3.0))
            loader.video("scalar")
        else:
            path = write_npz(tmp_path / "text", "qid4", last_hidden_state=np.float32(3.0))
            loader.text(4)
    assert info.value.file == str(path) and "got shape ()" in info.value.message


def test_float64_values_beyond_float32_range_name_file_and_row(tmp_path: Path, rng: np.random.Generator) -> None:
    cfg = make_cfg(tmp_path, v_feat_dirs=[str(tmp_path / "clip")])
    big = rng.normal(size=(6, 4))
    big[4, 2] = 1e300  # finite in float64, inf once cast to float32
    path = write_npz(tmp_path / "clip", "big", features=big)
    err = _error(cfg, "big")
    assert err.file == str(path) and err.field == "features"
    assert "row 4" in err.message and "float32 range" in err.message
    write_npz(tmp_path / "text", "qid3", last_hidden_state=big)
    with pytest.raises(MasraError, match="row 4 .*float32 range"):
        FeatureLoader(cfg).text(3)


def test_rows_near_float32_max_are_normalised_not_zeroed(tmp_path: Path, rng: np.random.Generator) -> None:
    cfg = make_cfg(tmp_path, v_feat_dirs=[str(tmp_path / "clip")], use_tef=False)
    feats = rng.normal(size=(3, 4)).astype(np.float32)
    feats[1] = [3e38, -3e38, 1e38, 0.0]  # its squared norm overflows float32
    write_npz(tmp_path / "clip", "edge", features=feats)
    video = FeatureLoader(cfg).video("edge")
    direction = np.array([3.0, -3.0, 1.0, 0.0]) / np.sqrt(19.0)
    np.testing.assert_allclose(video[1], direction, rtol=1e-6)
    # the other rows keep the anchors' float32 formula bit for bit
    np.testing.assert_array_equal(video[[0, 2]], anchor_video([feats[[0, 2]]], 75)[:, :4])


def test_one_dimensional_text_feature_keeps_its_width(tmp_path: Path, rng: np.random.Generator) -> None:
    pooled = rng.normal(size=40)  # one pooled vector wider than max_q_l
    cfg = make_cfg(tmp_path, t_feat_key="pooler_output", max_q_l=32)
    write_npz(tmp_path / "text", "qid21", pooler_output=pooled)
    text = FeatureLoader(cfg).text(21)
    np.testing.assert_allclose(text[0], pooled / (np.linalg.norm(pooled) + 1e-5), rtol=1e-6)
