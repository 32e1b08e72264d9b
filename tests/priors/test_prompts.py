"""Versioned prompts: v2 keeps v1's caption and event prompts and adds the re-ask note, which restates
the number of frames."""

from __future__ import annotations

from masra.priors.prompts import PROMPT_FILES, PROMPT_VERSION, caption_messages, load_template


def texts(messages: list[dict]) -> list[str]:
    return [part["text"] for part in messages[0]["content"] if part["type"] == "text"]


def test_every_version_loads_and_v2_keeps_the_v1_prompts() -> None:
    for version, kinds in PROMPT_FILES.items():
        for kind in kinds:
            assert load_template(kind, version).template.strip()
    assert PROMPT_VERSION == "v2"
    urls = ["data:image/jpeg;base64,AAAA", "data:image/jpeg;base64,BBBB", "data:image/jpeg;base64,CCCC"]
    assert caption_messages(urls, version="v2") == caption_messages(urls, version="v1")


def test_a_reask_restates_the_count_after_the_same_frames_and_prompt() -> None:
    urls = ["data:image/jpeg;base64,AAAA", "data:image/jpeg;base64,BBBB", "data:image/jpeg;base64,CCCC"]
    first, again = caption_messages(urls), caption_messages(urls, recount=2)
    assert again[0]["content"][:-1] == first[0]["content"]  # same frames, same prompt
    note = texts(again)[-1]
    assert note.startswith("Your previous answer gave 2 usable captions, but there are 3 frames.")
    assert "exactly 3 non-empty strings" in note
    assert not any("previous answer" in text for text in texts(first))
