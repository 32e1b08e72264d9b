"""Feature loading vs a numpy re-implementation of the anchors' formula, and every error it raises."""

from __future__ import annotations

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

    cfg.v_feat_dim = 7
    with pytest.raises(MasraError, match="config says 7"):
        FeatureLoader(cfg).video("dim4")


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
