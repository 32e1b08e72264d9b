"""Encode the prior cache (``priors.jsonl``) into per-video ``{vid}.npz`` files for training.

For each video (the last cache record per vid wins; a torn last line is ignored) the clip captions and
event descriptions are embedded by a frozen text encoder and written as a prior file
(:mod:`masra.data.prior_file`), with ``clip_caption_valid`` False where a clip has no caption, plus::

    content_hash        str     hash of the record content the file was made from (used to resume)

``DIR/manifest.json`` records the encoder name and dimension; a folder never mixes encoders. Re-running
skips videos whose file matches the record's content hash and re-encodes those whose record changed.
A video whose latest record has neither captions nor events gets no file (it trains without priors).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from masra.data.arrays import read_npz_arrays
from masra.data.jsonl import write_json
from masra.data.prior_file import prior_path, read_prior_dim, write_prior_file
from masra.errors import MasraError
from masra.priors.cache import scan_cache
from masra.priors.text_encoders import (
    DEFAULT_ENCODER,
    TextEncoder,
    encoder_name,
    load_text_encoder,
)

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
PRIOR_FORMAT = "masra-priors-v1"
HASH_KEY = "content_hash"  # stored beside the prior arrays
# Videos are encoded in groups whose unique texts go through the encoder together (fills GPU batches).
GROUP_BATCHES = 8


@dataclass(frozen=True)
class PriorTexts:
    """The content of one cache record that the encoded file depends on."""

    vid: str
    captions: list[str | None]  # one per clip; None = no caption
    events: list[tuple[float, float, str]]  # (start, end, description)

    @property
    def is_empty(self) -> bool:
        return not self.events and all(c is None for c in self.captions)

    @property
    def content_hash(self) -> str:
        payload = json.dumps(
            {"format": PRIOR_FORMAT, "captions": self.captions, "events": self.events},
            ensure_ascii=False,
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class EncodeSummary:
    videos: int  # videos in the cache
    encoded: int  # files written by this run
    unchanged: int  # files already up to date
    empty: int  # videos with neither captions nor events (no file)
    texts: int  # distinct texts sent to the encoder
    encoder: str
    dim: int | None  # None when nothing had to be encoded and no manifest existed
    out_dir: str
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_video_prior(record: dict[str, Any]) -> PriorTexts:
    """The encodable content of one cache record (validated by ``read_cache``): blank captions count as
    missing, blank event descriptions are dropped, spans are ordered and clipped at 0 s."""
    events: list[tuple[float, float, str]] = []
    for event in record["events"]:
        if event["description"].strip():
            start, end = sorted((max(0.0, float(event["start"])), max(0.0, float(event["end"]))))
            events.append((start, end, event["description"].strip()))
    return PriorTexts(
        vid=record["vid"],
        captions=[c.strip() if c is not None and c.strip() else None for c in record["captions"]],
        events=events,
    )


def stored_hash(path: Path) -> str | None:
    """The content hash stored in an encoded file; None when absent or unreadable (then it is redone)."""
    try:
        arrays = read_npz_arrays(path, (), optional=(HASH_KEY,))
    except MasraError:
        return None
    return str(arrays[HASH_KEY]) if HASH_KEY in arrays else None


def _read_manifest(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MasraError(f"unreadable manifest ({err})", file=path) from None
    if not isinstance(manifest, dict) or "encoder" not in manifest or "dim" not in manifest:
        raise MasraError("manifest lacks 'encoder' or 'dim'", file=path)
    return manifest


def _existing_dim_without_manifest(out_dir: Path) -> int | None:
    """Dimension of prior files written by other tools into a folder without manifest."""
    for path in sorted(out_dir.glob("*.npz")):
        try:
            return read_prior_dim(path)
        except MasraError:
            continue
    return None


def _check_encoder_fits(out_dir: Path, manifest: dict[str, Any] | None, name: str, dim: int | None) -> None:
    if manifest is not None:
        if manifest["encoder"] != name:
            raise MasraError(
                f"folder holds priors from encoder {manifest['encoder']!r}, not {name!r}; use another --out folder",
                file=out_dir / MANIFEST_NAME,
                field="encoder",
            )
        if dim is not None and int(manifest["dim"]) != dim:
            raise MasraError(
                f"folder holds {manifest['dim']}-d priors, encoder {name!r} gives {dim}-d; use another --out folder",
                file=out_dir / MANIFEST_NAME,
                field="dim",
            )
    elif dim is not None:
        existing = _existing_dim_without_manifest(out_dir)
        if existing is not None and existing != dim:
            raise MasraError(
                f"folder already holds {existing}-d priors, encoder {name!r} gives {dim}-d; use another --out folder",
                file=out_dir,
                field="dim",
            )


def _encode_group(encoder: TextEncoder, group: list[PriorTexts], batch_size: int) -> tuple[dict[str, np.ndarray], int]:
    """Embed the distinct texts of a group of videos at once: {text: [Ds] vector}, number of texts."""
    texts: dict[str, None] = {}
    for prior in group:
        texts.update((c, None) for c in prior.captions if c is not None)
        texts.update((desc, None) for _, _, desc in prior.events)
    unique = list(texts)
    vectors = encoder.encode(unique, batch_size=batch_size) if unique else np.zeros((0, encoder.dim), np.float32)
    return dict(zip(unique, vectors)), len(unique)


def _write_video(path: Path, prior: PriorTexts, vectors: dict[str, np.ndarray], dim: int) -> None:
    n_clips, n_events = len(prior.captions), len(prior.events)
    caption_emb = np.zeros((n_clips, dim), dtype=np.float32)  # [L, Ds]
    caption_valid = np.zeros((n_clips,), dtype=bool)  # [L]
    for i, caption in enumerate(prior.captions):
        if caption is not None:
            caption_emb[i] = vectors[caption]
            caption_valid[i] = True
    event_emb = np.zeros((n_events, dim), dtype=np.float32)  # [M, Ds]
    event_spans = np.zeros((n_events, 2), dtype=np.float32)  # [M, 2] seconds
    for k, (start, end, desc) in enumerate(prior.events):
        event_emb[k] = vectors[desc]
        event_spans[k] = (start, end)
    write_prior_file(
        path,
        caption_emb=caption_emb,
        caption_valid=caption_valid,
        event_emb=event_emb,
        event_spans=event_spans,
        extra={HASH_KEY: np.array(prior.content_hash)},
    )


def encode_priors(
    *,
    priors: str | Path,
    out: str | Path,
    encoder: str | TextEncoder = DEFAULT_ENCODER,
    batch_size: int = 64,
    device: str | None = None,
    progress: bool = False,
) -> EncodeSummary:
    """Encode a prior cache into ``out/{vid}.npz`` files (see the module docstring), resuming where possible.

    ``encoder`` is a spec (``minilm`` | ``sentence-transformers:PATH`` | ``clip:PATH``, loaded on ``device``,
    default CUDA when present) or an already loaded :class:`TextEncoder`. The model is loaded only when some
    video needs encoding. Raises MasraError on an unreadable cache, an invalid record, a vid that would
    leave ``out``, or a folder that holds priors of another encoder.
    """
    started = time.perf_counter()
    if batch_size < 1:
        raise MasraError(f"batch size must be >= 1, got {batch_size}", field="batch_size")
    cache_path = Path(priors)
    out_dir = Path(out)
    if not cache_path.is_file():
        raise MasraError("prior cache not found", file=cache_path)
    contents = scan_cache(cache_path)
    videos = [parse_video_prior(record) for record in contents.records.values()]
    targets: dict[str, Path] = {}
    for vid in contents.records:
        try:
            targets[vid] = prior_path(out_dir, vid)
        except MasraError as err:
            raise MasraError(err.message, file=cache_path, line=contents.lines[vid], field="vid") from None

    name = encoder_name(encoder) if isinstance(encoder, str) else encoder.name
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(out_dir)
    _check_encoder_fits(out_dir, manifest, name, None if isinstance(encoder, str) else encoder.dim)

    todo: list[PriorTexts] = []
    unchanged = empty = 0
    for prior in videos:
        target = targets[prior.vid]
        if prior.is_empty:
            empty += 1
            if target.exists():  # the video's latest record lost its content: drop the stale file
                target.unlink()
        elif target.exists() and stored_hash(target) == prior.content_hash:
            unchanged += 1
        else:
            todo.append(prior)

    dim = None if manifest is None else int(manifest["dim"])
    n_texts = 0
    if todo:
        text_encoder = load_text_encoder(encoder, device=device) if isinstance(encoder, str) else encoder
        dim = int(text_encoder.dim)
        _check_encoder_fits(out_dir, manifest, name, dim)
        if manifest is None:
            write_json(out_dir / MANIFEST_NAME, {"format": PRIOR_FORMAT, "encoder": name, "dim": dim})
        n_texts = _encode_videos(text_encoder, todo, targets, batch_size=batch_size, progress=progress)

    summary = EncodeSummary(
        videos=len(videos),
        encoded=len(todo),
        unchanged=unchanged,
        empty=empty,
        texts=n_texts,
        encoder=name,
        dim=dim,
        out_dir=str(out_dir),
        seconds=round(time.perf_counter() - started, 3),
    )
    logger.debug(
        "encoded %d videos (%d unchanged, %d without captions or events) into %s",
        summary.encoded,
        summary.unchanged,
        summary.empty,
        out_dir,
    )
    return summary


def _groups(todo: list[PriorTexts], batch_size: int) -> Iterator[list[PriorTexts]]:
    """Consecutive videos with about GROUP_BATCHES encoder batches of texts each."""
    group: list[PriorTexts] = []
    size = 0
    for prior in todo:
        group.append(prior)
        size += len(prior.captions) + len(prior.events)
        if size >= GROUP_BATCHES * batch_size:
            yield group
            group, size = [], 0
    if group:
        yield group


def _encode_videos(
    encoder: TextEncoder, todo: list[PriorTexts], targets: dict[str, Path], *, batch_size: int, progress: bool
) -> int:
    """Encode and write every video of ``todo``; returns the number of distinct texts encoded."""
    from tqdm import tqdm

    n_texts = 0
    with tqdm(total=len(todo), desc="encode priors", unit="video", disable=not progress) as bar:
        for group in _groups(todo, batch_size):
            vectors, count = _encode_group(encoder, group, batch_size)
            n_texts += count
            for prior in group:
                _write_video(targets[prior.vid], prior, vectors, encoder.dim)
            bar.update(len(group))
    return n_texts
