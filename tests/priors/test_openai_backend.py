"""The OpenAI-compatible backend against real local HTTP servers: request layout and error mapping."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from email.utils import formatdate
from time import time

import pytest
from conftest import completion
from pytest_httpserver import HTTPServer
from werkzeug import Response

from masra.priors.backends.base import BackendError, ChatBackend
from masra.priors.backends.openai_compat import OpenAICompatBackend, parse_retry_after
from masra.priors.prompts import caption_messages, event_messages

IMAGE = "data:image/jpeg;base64,/9j/AAAA"


@pytest.fixture
def server(httpserver: HTTPServer) -> HTTPServer:
    """pytest-httpserver's session server, cleared between tests."""
    return httpserver


def chat(backend: OpenAICompatBackend, messages: list | None = None) -> str:
    async def go() -> str:
        try:
            return await backend.chat(messages or caption_messages([IMAGE]), max_tokens=77, temperature=0.3)
        finally:
            await backend.aclose()

    return asyncio.run(go())


def failure(backend: OpenAICompatBackend) -> BackendError:
    with pytest.raises(BackendError) as err:
        chat(backend)
    return err.value


def test_request_layout_and_usage(server):
    seen = {}

    def handler(request):
        seen["payload"] = json.loads(request.get_data())
        seen["auth"] = request.headers.get("Authorization")
        return Response(json.dumps(completion("two words", usage=(321, 2))), content_type="application/json")

    server.expect_request("/v1/chat/completions", method="POST").respond_with_handler(handler)
    backend = OpenAICompatBackend(server.url_for("/v1/"), "qwen-vl", api_key="k-1")
    assert isinstance(backend, ChatBackend)
    messages = event_messages([(1.0, IMAGE), (3.5, IMAGE)], 10.0)
    assert chat(backend, messages) == "two words"
    payload = seen["payload"]
    assert seen["auth"] == "Bearer k-1"
    assert (payload["model"], payload["max_tokens"], payload["temperature"]) == ("qwen-vl", 77, 0.3)
    content = payload["messages"][0]["content"]
    assert [p["type"] for p in content] == ["text", "image_url", "text", "image_url", "text"]
    assert [content[0]["text"], content[2]["text"]] == ["[1 s]", "[3.5 s]"]
    assert content[1]["image_url"]["url"] == IMAGE
    assert "10 seconds" in content[-1]["text"] and '"start"' in content[-1]["text"]
    assert backend.usage == {"prompt_tokens": 321, "completion_tokens": 2}


def test_text_only_sends_plain_strings(server):
    seen = {}

    def handler(request):
        seen["payload"] = json.loads(request.get_data())
        seen["auth"] = request.headers.get("Authorization")
        return Response(json.dumps(completion("ok")), content_type="application/json")

    server.expect_request("/v1/chat/completions").respond_with_handler(handler)
    backend = OpenAICompatBackend(server.url_for("/v1"), "smol", supports_images=False)
    chat(backend, caption_messages([IMAGE, IMAGE]))
    content = seen["payload"]["messages"][0]["content"]
    assert isinstance(content, str) and "base64" not in content
    assert content.startswith("Frame 1:\nFrame 2:\n") and "exactly 2 strings" in content
    assert seen["auth"] is None  # no key, no header


@pytest.mark.parametrize(
    "status, retryable, fragment",
    [(500, True, "boom"), (503, True, "boom"), (400, False, "boom"), (401, False, "check the API key"),
     (403, False, "access denied"), (404, False, "check --base-url")],
)
def test_http_errors(server, status, retryable, fragment):
    server.expect_request("/v1/chat/completions").respond_with_json({"error": {"message": "boom"}}, status=status)
    err = failure(OpenAICompatBackend(server.url_for("/v1"), "m"))
    assert (err.status, err.retryable) == (status, retryable)
    assert f"HTTP {status}" in str(err) and fragment in str(err)


def test_429_carries_retry_after(server):
    server.expect_request("/v1/chat/completions").respond_with_data("busy", status=429, headers={"Retry-After": "7"})
    err = failure(OpenAICompatBackend(server.url_for("/v1"), "m"))
    assert err.retryable and err.status == 429 and err.retry_after == 7.0


def test_parse_retry_after():
    assert parse_retry_after("3") == 3.0 and parse_retry_after("1.5") == 1.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert 28 <= parse_retry_after(formatdate(time() + 30, usegmt=True)) <= 31
    assert parse_retry_after(formatdate(time() - 30, usegmt=True)) == 0.0


@pytest.mark.parametrize(
    "body",
    ['{"choices": [', '{"choices": []}', '{"choices": [{"message": {"content": null}}]}', "<html>gateway</html>"],
)
def test_malformed_bodies_are_retryable(server, body):
    server.expect_request("/v1/chat/completions").respond_with_data(body, content_type="application/json")
    err = failure(OpenAICompatBackend(server.url_for("/v1"), "m"))
    assert err.retryable


def _raw_server(reply: bytes) -> tuple[str, threading.Thread]:
    """A one-connection server that reads the request and sends ``reply`` verbatim, then closes."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0].split(b":")[1])
                while len(body) < length:
                    body += conn.recv(65536)
                conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}/v1", thread


def test_truncated_body_is_retryable():
    body = json.dumps(completion("hello")).encode()
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    url, thread = _raw_server(head + body[: len(body) // 2])
    err = failure(OpenAICompatBackend(url, "m"))
    thread.join(timeout=5)
    assert err.retryable and err.status is None and "RemoteProtocolError" in str(err)


def test_timeout_and_refused_connection_are_retryable():
    listener = socket.create_server(("127.0.0.1", 0))  # accepts (backlog) but never answers
    with listener:
        err = failure(OpenAICompatBackend(f"http://127.0.0.1:{listener.getsockname()[1]}/v1", "m", timeout=0.3))
    assert err.retryable and "timed out" in str(err)
    free = socket.create_server(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    err = failure(OpenAICompatBackend(f"http://127.0.0.1:{port}/v1", "m"))
    assert err.retryable and "ConnectError" in str(err)
