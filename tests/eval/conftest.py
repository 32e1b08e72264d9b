"""Shared-data fixtures for the evaluator tests (skipped with a reason when ../shared/data is absent, failed
under CI=true: tests/required.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from required import SHARED_DATA, require_path



@pytest.fixture(scope="session")
def shared_data() -> Path:
    return require_path(SHARED_DATA, "real annotations")


@pytest.fixture(scope="session")
def qvh_dir(shared_data: Path) -> Path:
    return shared_data / "qvhighlights"


@pytest.fixture(scope="session")
def val_gt(qvh_dir: Path) -> list[dict]:
    from masra.eval import load_ground_truth

    return load_ground_truth(qvh_dir / "highlight_val_release.jsonl")


@pytest.fixture(scope="session")
def sample_preds(qvh_dir: Path) -> list[dict]:
    from masra.eval import load_submission

    return load_submission(qvh_dir / "eval_samples" / "sample_val_preds.jsonl")
