"""The interface every prior-generation backend implements.

Messages use the OpenAI chat-completions layout; an image is a content part
``{"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,..."}}``. A text-only backend drops
image parts (and says so in its ``supports_images``).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

# Seconds a request to a server may take before it counts as failed (and is retried).
DEFAULT_REQUEST_TIMEOUT = 120.0


class BackendError(Exception):
    """A failed request. ``retryable`` tells the scheduler whether back-off and retry make sense
    (429, 5xx, timeouts, connection errors) or the whole run must stop (401/403/404: auth, unknown model)."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


def message_parts(content: Any) -> list[dict[str, Any]]:
    """Message content as a list of OpenAI content parts."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return content
    raise BackendError(
        f"message content must be a string or a list of parts, got {type(content).__name__}", retryable=False
    )


def text_only_messages(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The messages with plain string content (text parts joined by newlines; image parts removed) and the
    number of images removed, for models that take no images."""
    converted, dropped = [], 0
    for message in messages:
        parts = message_parts(message.get("content", ""))
        dropped += sum(part.get("type") == "image_url" for part in parts)
        text = "\n".join(part["text"] for part in parts if part.get("type") == "text")
        converted.append({**message, "content": text})
    return converted, dropped


@runtime_checkable
class ChatBackend(Protocol):
    name: str  # "openai" | "transformers"
    model: str  # model name recorded in the cache
    supports_images: bool

    async def chat(self, messages: list[dict[str, Any]], *, max_tokens: int, temperature: float) -> str:
        """Return the assistant's reply text; raise BackendError on failure."""
        ...

    async def aclose(self) -> None: ...
