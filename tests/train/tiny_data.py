"""A tiny QVHighlights-format dataset on disk (anchor layout) and a tiny model config, for fast training tests.

Each video has a planted moment: its clips carry the query's direction in feature space, so a model can
learn something in a few epochs; everything is derived from a seed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from masra.config import Config, load_config

V_DIM = 12
T_DIM = 8
PRIOR_DIM = 6
CLIP_LENGTH = 2.0


def _rows(rng: np.random.Generator, first_qid: int, count: int, split_windows: bool = False) -> list[dict]:
    """``split_windows``: every odd row gets two windows (its moment widened to 4+ clips, a one-clip gap)."""
    rows = []
    for k in range(count):
        n_clips = int(rng.integers(8, 14))
        start = int(rng.integers(0, n_clips - 3))
        end = int(rng.integers(start + 2, n_clips + 1))
        if split_windows and k % 2:
            end = max(end, start + 4)
        clip_ids = list(range(start, end))
        windows = [[start * CLIP_LENGTH, end * CLIP_LENGTH]]
        if split_windows and k % 2:
            gap = (start + end) // 2
            clip_ids.remove(gap)
            windows = [[start * CLIP_LENGTH, gap * CLIP_LENGTH], [(gap + 1) * CLIP_LENGTH, end * CLIP_LENGTH]]
        rows.append({
            "qid": first_qid + k,
            "query": f"query {first_qid + k}",
            "duration": n_clips * CLIP_LENGTH,
            "vid": f"video{first_qid + k:03d}_0.0_150.0",
            "relevant_windows": windows,
            "relevant_clip_ids": clip_ids,
            "saliency_scores": [[int(v) for v in rng.integers(1, 5, size=3)] for _ in clip_ids],
        })
    return rows


def make_tiny_dataset(root: Path, n_train: int = 8, n_val: int = 4, seed: int = 0,
                      split_windows: bool = False) -> dict[str, Path]:
    """Write annotations + video/text npz features under ``root``; returns the paths."""
    rng = np.random.default_rng(seed)
    paths = {
        "train": root / "train.jsonl",
        "val": root / "val.jsonl",
        "test": root / "test.jsonl",
        "video": root / "features" / "video",
        "text": root / "features" / "text",
        "priors": root / "priors",
    }
    for name in ("video", "text", "priors"):
        paths[name].mkdir(parents=True)
    splits = {"train": _rows(rng, 0, n_train, split_windows), "val": _rows(rng, 1000, n_val, split_windows)}
    for split, rows in splits.items():
        paths[split].write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        for row in rows:
            direction = rng.normal(size=V_DIM)
            n_clips = int(row["duration"] / CLIP_LENGTH)
            video = rng.normal(scale=0.5, size=(n_clips, V_DIM))
            video[row["relevant_clip_ids"]] += 2.0 * direction
            np.savez(paths["video"] / f"{row['vid']}.npz", features=video.astype(np.float32))
            tokens = np.concatenate([direction[None, :T_DIM], rng.normal(size=(3, T_DIM))]).astype(np.float32)
            np.savez(paths["text"] / f"qid{row['qid']}.npz", last_hidden_state=tokens, pooler_output=tokens[0])
            _write_priors(paths["priors"] / f"{row['vid']}.npz", row, n_clips, rng)
    # The test split is the val split without labels (like QVHighlights' test release).
    keep = ("qid", "query", "duration", "vid")
    paths["test"].write_text("\n".join(json.dumps({k: r[k] for k in keep}) for r in splits["val"]) + "\n")
    return paths


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _write_priors(path: Path, row: dict, n_clips: int, rng: np.random.Generator) -> None:
    """MLLM-prior stand-ins: one caption per clip (shared inside the GT moment) and two events."""
    start, end = row["relevant_windows"][0][0], row["relevant_windows"][-1][1]
    moment, background = rng.normal(size=PRIOR_DIM), rng.normal(size=PRIOR_DIM)
    inside = (np.arange(n_clips) * CLIP_LENGTH >= start) & (np.arange(n_clips) * CLIP_LENGTH < end)
    captions = np.where(inside[:, None], moment, background) + rng.normal(scale=0.3, size=(n_clips, PRIOR_DIM))
    events = np.stack([moment, background])
    spans = np.array([[start, end], [0.0, start if start > 0 else end]], dtype=np.float32)
    np.savez(path, clip_caption_emb=_unit(captions), event_emb=_unit(events), event_spans=spans)


MASRA_ALL = ["model.dai.enabled=true", "model.sge.enabled=true", "model.sora.enabled=true",
             "model.esta.enabled=true", "model.lrca.enabled=true", "model.sora.band=4", "loss.lrca_band=4",
             "model.lrca.proj_dim=16", "model.dai.codebook_size=4"]

TINY_MODEL = [
    "model.hidden_dim=32", "model.nheads=4", "model.dim_feedforward=64", "model.t2v_layers=1",
    "model.enc_layers=1", "model.dec_layers=2", "model.num_queries=4", "model.input_dropout=0.1",
]


def tiny_config(paths: dict[str, Path], run_dir: Path, *overrides: str) -> Config:
    """A config that trains in about a second per epoch on one CPU core."""
    return load_config(None, [
        "data.dataset=qvhighlights",
        f"data.train_path={paths['train']}",
        f"data.eval_path={paths['val']}",
        f"data.test_path={paths['test']}",
        f"data.v_feat_dirs=[{paths['video']}]",
        f"data.t_feat_dir={paths['text']}",
        "data.max_v_l=75",
        *TINY_MODEL,
        "train.epochs=2",
        "train.batch_size=4",
        "train.eval_batch_size=4",
        "train.eval_every=1",
        "train.lr=1e-3",
        "train.device=cpu",
        "train.seed=7",
        f"train.output_dir={run_dir}",
        *overrides,
    ])
