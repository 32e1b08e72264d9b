from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tiny_data import make_tiny_dataset


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_paths(tmp_path_factory) -> dict[str, Path]:
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def windows_paths(tmp_path_factory) -> dict[str, Path]:
    """Like ``tiny_paths``, but odd samples have two GT windows (so batches differ in their match counts)."""
    return make_tiny_dataset(tmp_path_factory.mktemp("windows"), split_windows=True)
