"""Versioned prompt templates (shipped as package data in ``masra/priors/prompts/``) and the chat messages
built from them. PROMPT_VERSION is written into every cache record, so priors made with different prompts
are never mixed up silently.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from string import Template
from typing import Any

PROMPT_VERSION = "v2"
# The template file of each kind, per prompt version. v2 keeps v1's caption and event prompts and adds the
# note that re-asks a caption request whose reply had the wrong number of captions.
PROMPT_FILES: dict[str, dict[str, str]] = {
    "v1": {"captions": "captions_v1.txt", "events": "events_v1.txt"},
    "v2": {"captions": "captions_v1.txt", "events": "events_v1.txt", "recount": "recount_v2.txt"},
}


@cache
def load_template(kind: str, version: str = PROMPT_VERSION) -> Template:
    """The template of ``kind`` ("captions", "events", "recount") in prompt ``version``."""
    name = PROMPT_FILES[version][kind]
    text = files("masra.priors").joinpath(f"prompts/{name}").read_text(encoding="utf-8")
    return Template(text.strip())


def _image_part(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def caption_messages(
    image_urls: list[str], *, recount: int | None = None, version: str = PROMPT_VERSION
) -> list[dict[str, Any]]:
    """One request captioning several clip frames at once; the reply is a JSON list of sentences in order.
    ``recount`` (the number of usable captions a previous reply gave) turns it into a re-ask: the same
    frames and prompt, followed by a note that restates the number of frames."""
    content: list[dict[str, Any]] = []
    for number, url in enumerate(image_urls, start=1):
        content += [_text_part(f"Frame {number}:"), _image_part(url)]
    prompt = load_template("captions", version).substitute(n_frames=len(image_urls))
    content.append(_text_part(prompt))
    if recount is not None:
        note = load_template("recount", version).substitute(found=recount, n_frames=len(image_urls))
        content.append(_text_part(note))
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
