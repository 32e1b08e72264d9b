"""The error a request gets back: an HTTP status and one sentence for the page (never a stack trace)."""

from __future__ import annotations


class RequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
