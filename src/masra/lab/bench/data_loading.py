"""``masra bench data``: reading every video through the npz-folder layout versus the packed store."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from masra.lab.bench.measure import Measurement, measure
from masra.lab.bench.table import BenchTable, ms, ratio
from masra.config import DataConfig
from masra.data.features import FeatureLoader
from masra.data.store import pack_features


@dataclass
class DataRow:
    videos: int
    npz: Measurement
    store: Measurement
    identical: bool  # both layouts give the same arrays


def _write_sources(root: Path, videos: int, clips: int, dims: tuple[int, ...], seed: int) -> list[Path]:
    rng = np.random.default_rng(seed)
    folders = []
    for index, dim in enumerate(dims):
        folder = root / f"source{index}"
        folder.mkdir()
        for v in range(videos):
            np.savez(folder / f"video{v}.npz", features=rng.standard_normal((clips, dim)).astype(np.float32))
        folders.append(folder)
    return folders


def bench_data(
    *, videos: int = 200, clips: int = 75, dims: tuple[int, ...] = (2304, 512), repeats: int = 3, seed: int = 0
) -> DataRow:
    with tempfile.TemporaryDirectory(prefix="masra-bench-") as tmp:
        root = Path(tmp)
        folders = _write_sources(root, videos, clips, dims, seed)
        stores = []
        for folder in folders:
            pack_features(folder, root / f"{folder.name}.store", kind="video", key="features", dtype="float32")
            stores.append(root / f"{folder.name}.store")
        vids = [f"video{v}" for v in range(videos)]
        npz_loader = FeatureLoader(DataConfig(v_feat_dirs=[str(f) for f in folders], max_v_l=-1))
        store_loader = FeatureLoader(DataConfig(v_feat_dirs=[str(s) for s in stores], max_v_l=-1))
        cpu = torch.device("cpu")
        npz = measure(lambda: [npz_loader.video(v) for v in vids], cpu, repeats=repeats, memory=False)
        store = measure(lambda: [store_loader.video(v) for v in vids], cpu, repeats=repeats, memory=False)
        identical = all(np.array_equal(npz_loader.video(v), store_loader.video(v)) for v in vids)
    return DataRow(videos, npz, store, identical)


def data_table(rows: list[DataRow]) -> BenchTable:
    return BenchTable(
        ["videos", "npz folders", "packed store", "speed-up", "identical"],
        [[str(r.videos), ms(r.npz.seconds), ms(r.store.seconds), ratio(r.store.seconds, r.npz.seconds), str(r.identical)]
         for r in rows],
    )
