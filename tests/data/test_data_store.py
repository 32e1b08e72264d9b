"""Packed store: round trip vs the npz layout, atomicity, overwrite protection, the `masra data pack` command."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from masra.cli.main import main
from masra.config import DataConfig
from masra.data import store as store_module
from masra.data.features import FeatureLoader
from masra.data.store import FeatureStore, pack_features
from masra.errors import MasraError


def make_features(folder: Path, rng: np.random.Generator, dim: int = 6) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True)
    arrays = {}
    for i, n in enumerate([5, 9, 1, 12]):
        arrays[f"vid_{i}"] = rng.normal(size=(n, dim)).astype(np.float32)
        np.savez(folder / f"vid_{i}.npz", features=arrays[f"vid_{i}"])
    return arrays


def test_float32_store_is_bit_identical_to_npz_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    arrays = make_features(tmp_path / "clip", rng)
    text_dir = tmp_path / "text"
    text_dir.mkdir()
    for qid in (3, 4):
        np.savez(text_dir / f"qid{qid}.npz", last_hidden_state=rng.normal(size=(qid + 10, 4)))
    pack_features(tmp_path / "clip", tmp_path / "clip_store")
    pack_features(text_dir, tmp_path / "text_store", kind="text")

    store = FeatureStore(tmp_path / "clip_store", verify=True)
    assert len(store) == 4 and store.dim == 6
    for name, array in arrays.items():
        np.testing.assert_array_equal(store.get(name), array)

    npz_cfg = DataConfig(v_feat_dirs=[str(tmp_path / "clip")], t_feat_dir=str(text_dir), max_v_l=-1, max_q_l=-1)
    store_cfg = DataConfig(v_feat_dirs=[str(tmp_path / "clip_store")], t_feat_dir=str(tmp_path / "text_store"), max_v_l=-1, max_q_l=-1)
    from_npz, from_store = FeatureLoader(npz_cfg), FeatureLoader(store_cfg)
    for name in arrays:
        a, b = from_npz.video(name), from_store.video(name)
        assert a.dtype == b.dtype == np.float32
        assert a.tobytes() == b.tobytes()
    for qid in (3, 4):
        assert from_npz.text(qid).tobytes() == from_store.text(qid).tobytes()


def test_float16_store_round_trips_within_half_precision(tmp_path: Path) -> None:
    arrays = make_features(tmp_path / "src", np.random.default_rng(2))
    manifest = pack_features(tmp_path / "src", tmp_path / "out", dtype="float16")
    assert manifest["dtype"] == "float16"
    store = FeatureStore(tmp_path / "out")
    for name, array in arrays.items():
        np.testing.assert_array_equal(store.get(name), array.astype(np.float16))


def test_manifest_and_index_describe_the_data(tmp_path: Path) -> None:
    arrays = make_features(tmp_path / "src", np.random.default_rng(3))
    manifest = pack_features(tmp_path / "src", tmp_path / "out")
    on_disk = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["rows"] == sum(len(a) for a in arrays.values()) and manifest["count"] == len(arrays)
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    offsets = sorted(index["entries"].values())
    assert all(o1 + n1 == o2 for (o1, n1), (o2, _) in zip(offsets, offsets[1:]))


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    make_features(tmp_path / "src", np.random.default_rng(4))
    pack_features(tmp_path / "src", tmp_path / "out")
    with pytest.raises(MasraError, match="--force"):
        pack_features(tmp_path / "src", tmp_path / "out")
    np.save(tmp_path / "src" / "extra.npy", np.ones((2, 6), dtype=np.float32))
    pack_features(tmp_path / "src", tmp_path / "out", force=True)
    assert "extra" in FeatureStore(tmp_path / "out")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_killed_pack_leaves_nothing_that_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_features(tmp_path / "src", np.random.default_rng(5))

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(store_module, "write_json", crash)
    with pytest.raises(KeyboardInterrupt):
        pack_features(tmp_path / "src", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]
    # a folder that has store files but no manifest (e.g. copied half-way) is refused, not read
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "data.npy").write_bytes(b"")
    with pytest.raises(MasraError, match="manifest.json missing"):
        FeatureLoader(DataConfig(v_feat_dirs=[str(tmp_path / "half")]))


def test_verify_detects_changed_content(tmp_path: Path) -> None:
    make_features(tmp_path / "src", np.random.default_rng(6))
    pack_features(tmp_path / "src", tmp_path / "out")
    data = np.load(tmp_path / "out" / "data.npy", mmap_mode="r+")
    data[0, 0] += 1.0
    data.flush()
    del data
    with pytest.raises(MasraError, match="content hash"):
        FeatureStore(tmp_path / "out", verify=True)


def test_pack_rejects_bad_inputs(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    with pytest.raises(MasraError, match="no .npz or .npy"):
        pack_features(src, tmp_path / "out")
    np.savez(src / "a.npz", features=np.ones((2, 3)))
    np.savez(src / "b.npz", features=np.ones((2, 4)))
    with pytest.raises(MasraError) as info:
        pack_features(src, tmp_path / "out")
    assert info.value.file == str(src / "b.npz") and "dim 4 differs from 3" in info.value.message
    (src / "b.npz").unlink()
    np.savez(src / "c.npz", features=np.full((2, 3), 1e6))
    with pytest.raises(MasraError, match="float16 range"):
        pack_features(src, tmp_path / "out", dtype="float16")
    assert not (tmp_path / "out").exists()


def test_store_pickles_without_its_memory_map(tmp_path: Path) -> None:
    arrays = make_features(tmp_path / "src", np.random.default_rng(7))
    pack_features(tmp_path / "src", tmp_path / "out")
    store = FeatureStore(tmp_path / "out")
    store.get("vid_0")
    clone = pickle.loads(pickle.dumps(store))
    assert clone._data is None
    np.testing.assert_array_equal(clone.get("vid_1"), arrays["vid_1"])


def test_pack_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_features(tmp_path / "src", np.random.default_rng(8))
    args = ["data", "pack", "--src", str(tmp_path / "src"), "--out", str(tmp_path / "out")]
    assert main(args) == 0
    assert "packed 4 items" in capsys.readouterr().out
    assert main(args) == 1
    assert "--force" in capsys.readouterr().err


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_force_never_deletes_a_folder_that_is_not_a_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_features(tmp_path / "src", np.random.default_rng(9))
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("months of work")
    (precious / "figures").mkdir()
    (precious / "figures" / "plot.pdf").write_bytes(b"%PDF")
    before = _tree(precious)
    with pytest.raises(MasraError, match="not a feature store") as info:
        pack_features(tmp_path / "src", precious, force=True)
    assert info.value.file == str(precious)
    assert _tree(precious) == before
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    assert main(["data", "pack", "--src", str(tmp_path / "src"), "--out", str(tmp_path / "notes.txt"), "--force"]) == 1
    assert "not a feature store" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "a file, not a folder"


def test_force_keeps_a_store_holding_files_it_did_not_write(tmp_path: Path) -> None:
    make_features(tmp_path / "src", np.random.default_rng(10))
    pack_features(tmp_path / "src", tmp_path / "out")
    (tmp_path / "out" / "README.md").write_text("my notes about this store")
    with pytest.raises(MasraError, match="README.md"):
        pack_features(tmp_path / "src", tmp_path / "out", force=True)
    assert (tmp_path / "out" / "README.md").is_file() and (tmp_path / "out" / "data.npy").is_file()


def test_force_refuses_a_folder_with_a_foreign_manifest(tmp_path: Path) -> None:
    make_features(tmp_path / "src", np.random.default_rng(11))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "manifest.json").write_text('{"name": "some other tool"}')
    with pytest.raises(MasraError, match="not a feature store"):
        pack_features(tmp_path / "src", tmp_path / "out", force=True)
    assert (tmp_path / "out" / "manifest.json").is_file()


@pytest.mark.parametrize("out", [".", ".."], ids=["out is src", "out contains src"])
def test_out_that_is_or_contains_src_is_refused(tmp_path: Path, out: str) -> None:
    src = tmp_path / "project" / "features"
    make_features(src, np.random.default_rng(12))
    before = _tree(tmp_path)
    with pytest.raises(MasraError, match="is or contains --src"):
        pack_features(src, src / out, force=True)
    assert _tree(tmp_path) == before


def test_store_inside_its_source_folder_is_not_packed_again(tmp_path: Path) -> None:
    arrays = make_features(tmp_path / "src", np.random.default_rng(13))
    (tmp_path / "src" / "stray.npz").mkdir()  # a folder with a feature-like name is not a source file
    pack_features(tmp_path / "src", tmp_path / "src" / "packed.npy")
    manifest = pack_features(tmp_path / "src", tmp_path / "src" / "packed.npy", force=True)
    assert manifest["count"] == len(arrays)
    assert set(FeatureStore(tmp_path / "src" / "packed.npy").entries) == set(arrays)


def test_pack_reports_corrupt_and_out_of_range_files(tmp_path: Path) -> None:
    from test_data_features import corrupt_compressed_npz

    src = tmp_path / "src"
    make_features(src, np.random.default_rng(14))
    bad = corrupt_compressed_npz(src / "vid_9.npz")
    with pytest.raises(MasraError, match="cannot read npz") as info:
        pack_features(src, tmp_path / "out")
    assert info.value.file == str(bad)
    bad.unlink()
    huge = np.ones((3, 6))
    huge[2, 5] = 1e300
    np.savez(src / "vid_8.npz", features=huge)
    with pytest.raises(MasraError, match="row 2 is beyond the float32 range") as info:
        pack_features(src, tmp_path / "out")
    assert info.value.file == str(src / "vid_8.npz")
    assert not (tmp_path / "out").exists()
