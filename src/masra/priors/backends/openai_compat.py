"""Chat backend for any OpenAI-compatible ``/chat/completions`` endpoint (vLLM, SGLang, Ollama, llama.cpp
server, hosted APIs), over ``httpx.AsyncClient``. Images travel as base64 data URLs in content parts.

Errors become BackendError: 429 (with its Retry-After), 5xx, 408, timeouts, connection errors and
truncated or malformed bodies are retryable; 400/401/403/404 (and other 4xx) are not: they mean a wrong
URL, key or model name, or a request the server will never accept, so the run must stop.
"""

from __future__ import annotations

import email.utils
import json
import time
from typing import Any

import httpx

from masra.priors.backends.base import DEFAULT_REQUEST_TIMEOUT, BackendError, text_only_messages

_RETRYABLE_4XX = {408, 409, 425, 429}
_HINTS = {
    401: "authentication failed: check the API key (--api-key-env)",
    403: "access denied: check the API key and its permissions",
    404: "not found: check --base-url (it usually ends in /v1) and --model",
}


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), None if absent/invalid."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _server_message(response: httpx.Response) -> str:
    """The error text a server put in its body (OpenAI layout ``{"error": {"message": ...}}`` or raw)."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text[:300].strip()
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])[:300]
    if isinstance(error, str):
        return error[:300]
    return str(body)[:300]


class OpenAICompatBackend:
    """``chat()`` posts one chat-completions request and returns the reply text. Token usage reported by the
    server accumulates in ``usage`` (prompt_tokens, completion_tokens)."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
        supports_images: bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.model = model
        self.supports_images = supports_images
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0}
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._client = httpx.AsyncClient(headers=headers, timeout=timeout, transport=transport)

    async def chat(self, messages: list[dict[str, Any]], *, max_tokens: int, temperature: float) -> str:
        payload = {
            "model": self.model,
            "messages": messages if self.supports_images else text_only_messages(messages)[0],
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        try:
            response = await self._client.post(self._url, json=payload)
        except httpx.TimeoutException as err:
            raise BackendError(f"timed out ({type(err).__name__})", retryable=True) from None
        except httpx.TransportError as err:
            # Connection refused/reset, or the body ended before its announced length.
            raise BackendError(f"{type(err).__name__}: {err}", retryable=True) from None
        return self._reply_text(response)

    def _reply_text(self, response: httpx.Response) -> str:
        status = response.status_code
        if status >= 400:
            message = f"HTTP {status} from {self._url}: {_server_message(response)}"
            if status in _HINTS:
                message += f" ({_HINTS[status]})"
            retryable = status >= 500 or status in _RETRYABLE_4XX
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise BackendError(message, retryable=retryable, status=status, retry_after=retry_after)
        try:
            body = response.json()
            content = body["choices"][0]["message"]["content"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError) as err:
            raise BackendError(
                f"malformed reply body ({type(err).__name__}): {response.text[:200]!r}", retryable=True, status=status
            ) from None
        if not isinstance(content, str):
            raise BackendError(f"reply without text content: {content!r:.200}", retryable=True, status=status)
        usage = body.get("usage") if isinstance(body, dict) else None
        if isinstance(usage, dict):
            for key in self.usage:
                if isinstance(usage.get(key), int):
                    self.usage[key] += usage[key]
        return content

    async def aclose(self) -> None:
        await self._client.aclose()
