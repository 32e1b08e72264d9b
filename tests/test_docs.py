"""The documentation holds together: every relative link in README.md and docs/*.md reaches an existing file
(and, for a Markdown target, an existing heading), and the README stays a short front door."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
README_MAX_LINES = 150
HEADLINE_MARKERS = ("<!-- results:headline:start -->", "<!-- results:headline:end -->")

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def prose(text: str) -> str:
    """The Markdown without fenced code blocks and inline code, where `](` is not a link."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(markdown: Path) -> set[str]:
    """Every heading anchor of a Markdown file, with GitHub's -1, -2 suffixes for repeated headings."""
    seen: dict[str, int] = {}
    result = set()
    for heading in HEADING.findall(FENCE.sub("", markdown.read_text(encoding="utf-8"))):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def relative_links(doc: Path) -> list[str]:
    return [target for target in LINK.findall(prose(doc.read_text(encoding="utf-8")))
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]  # http:, https:, mailto: are not checked


def broken_links(doc: Path) -> list[str]:
    """``target (why)`` for every relative link of ``doc`` whose file or heading does not exist."""
    broken = []
    for target in relative_links(doc):
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(f"{target} (no file {file})")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target} (no heading #{anchor} in {file})")
    return broken


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: str(doc.relative_to(REPO)))
def test_every_relative_link_reaches_a_file_and_heading(doc: Path) -> None:
    assert broken_links(doc) == []


def test_the_link_check_sees_links_and_rejects_broken_ones(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## A `code` heading: yes\n\n```\n# not a heading\n```\n")
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# Doc\n\n[fine](other.md#a-code-heading-yes) [self](#doc) ![img](missing.png)\n"
        "[bad anchor](other.md#not-a-heading) [web](https://example.org/x) `[not](a-link.md)`\n"
        "```\n[in code](nowhere.md)\n```\n"
    )
    assert relative_links(doc) == ["other.md#a-code-heading-yes", "#doc", "missing.png", "other.md#not-a-heading"]
    assert [entry.split(" ")[0] for entry in broken_links(doc)] == ["missing.png", "other.md#not-a-heading"]


def test_readme_is_a_short_front_door() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES
    start, end = (text.index(marker) for marker in HEADLINE_MARKERS)  # the block `masra results` fills
    assert start < end
    assert "docs/ARCHITECTURE.md" in text[: len(text) // 3], "ARCHITECTURE.md should be pointed to near the top"
