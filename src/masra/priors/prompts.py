"""Versioned prompt templates (shipped as package data in ``masra/priors/prompts/``) and the chat messages
built from them. PROMPT_VERSION is written into every cache record, so priors made with different prompts
are never mixed up silently.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from string import Template
from typing import Any

PROMPT_VERSION = "v1"


@cache
def load_template(kind: str, version: str = PROMPT_VERSION) -> Template:
    """The ``{kind}_{version}.txt`` template ("captions" or "events")."""
    text = files("masra.priors").joinpath(f"prompts/{kind}_{version}.txt").read_text(encoding="utf-8")
    return Template(text.strip())


def _image_part(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def caption_messages(image_urls: list[str], *, version: str = PROMPT_VERSION) -> list[dict[str, Any]]:
    """One request captioning several clip frames at once; the reply is a JSON list of sentences in order."""
    content: list[dict[str, Any]] = []
    for number, url in enumerate(image_urls, start=1):
        content += [_text_part(f"Frame {number}:"), _image_part(url)]
    prompt = load_template("captions", version).substitute(n_frames=len(image_urls))
    content.append(_text_part(prompt))
    return [{"role": "user", "content": content}]


def event_messages(
    frames: list[tuple[float, str]], duration: float, *, version: str = PROMPT_VERSION
) -> list[dict[str, Any]]:
    """One request for the video's events; ``frames`` are (seconds, image URL) pairs in time order.
    Timestamps are relative to the annotated segment, the same time axis as the returned spans."""
    content: list[dict[str, Any]] = []
    for seconds, url in frames:
        content += [_text_part(f"[{round(seconds, 2):g} s]"), _image_part(url)]
    prompt = load_template("events", version).substitute(n_frames=len(frames), duration=f"{duration:g}")
    content.append(_text_part(prompt))
    return [{"role": "user", "content": content}]
