"""Shared-data fixtures for the evaluator tests (skipped with a reason when ../shared/data is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared annotation data not found at {SHARED_DATA}")
    return SHARED_DATA


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
