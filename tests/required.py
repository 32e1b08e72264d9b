"""What a test needs besides the package: data files, sample videos, optional wheels.

A missing asset skips the test with its reason on a developer machine, but fails it when ``CI=true``:
``make test`` installs everything the suite reads (Makefile ``test-assets``, pyproject's ``dev`` extra), so
in CI a missing asset is a broken set-up, and silently skipping would let the evidence vanish.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import NoReturn

import pytest

# Real annotations next to the checkout (tests only; the package never reads them).
SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
# Debian's opencv-doc sample videos (vtest.avi, a damaged Megamind_bugy.avi); `make test` installs them.
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def missing(why: str) -> NoReturn:
    """Skip with ``why``; under CI=true fail instead."""
    if in_ci():
        pytest.fail(f"{why}; CI=true, so a missing test asset is an error (`make test` installs it)", pytrace=False)
    pytest.skip(why)


def require_path(path: Path, why: str) -> Path:
    """``path`` when it exists; otherwise skip (fail under CI) saying what is missing and why it is needed."""
    if not path.exists():
        missing(f"{why}: {path} not found")
    return path


def require_module(name: str, why: str) -> None:
    """Skip (fail under CI) unless the module ``name`` is importable."""
    if importlib.util.find_spec(name) is None:
        missing(f"{why}: module {name} is not installed")
