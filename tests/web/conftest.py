"""Shared fixtures of the web tests: real sample videos and an app without a model (for the checks that
refuse a request before any grounding starts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from web_helpers import sample_video


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
