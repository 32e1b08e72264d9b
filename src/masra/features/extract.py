"""``masra features extract`` / ``masra features text``: feature folders in the anchors' layout.

Video: ``{out}/{vid}.npz`` with ``features`` [L, D] float32 (vid = the file name without extension).
Text: ``{out}/{prefix}{qid}.npz`` with ``last_hidden_state`` [N, Dt] and ``pooler_output`` [Dp].
Both are resumable: an item whose file exists is skipped (files are written to a temporary name, fsynced
and renamed, so an existing file is complete), and ``extraction.json`` records the encoder. A video that
cannot be decoded is counted and listed in the summary; the others go on. With ``store``, the npz files
go to ``{out}.parts`` and are packed into the store ``{out}`` once every item (of every shard) is done.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from masra.data.arrays import write_npz_atomic
from masra.data.jsonl import iter_jsonl
from masra.data.paths import child_path
from masra.errors import MasraError
from masra.features.encoder import ClipEncoder
from masra.extraction_record import INFO_FILE, ExtractionInfo, check_same_encoder, write_extraction_info
from masra.features.video import extract_video
from masra.video.limits import check_clip_length

logger = logging.getLogger("masra.features")


@dataclass
class ExtractSummary:
    total: int  # items of this shard
    done: int = 0  # extracted now
    skipped: int = 0  # already present
    failed: dict[str, str] = field(default_factory=dict)  # item -> reason
    seconds: float = 0.0
    clips: int = 0  # clips (video) or queries (text) encoded now
    store: Path | None = None  # the packed store, when written

    def lines(self) -> list[str]:
        rate = f", {self.clips / self.seconds:.1f} per s" if self.seconds > 0 and self.clips else ""
        out = [f"{self.total} items: {self.done} extracted ({self.clips} encoded{rate}), {self.skipped} already "
               f"done, {len(self.failed)} failed, in {self.seconds:.1f} s"]
        out += [f"  failed {name}: {reason}" for name, reason in self.failed.items()]
        if self.store is not None:
            out.append(f"packed store: {self.store}")
        return out


def _npz_folder(out: Path, store: bool) -> Path:
    """The folder the npz files go to, refusing (before anything is extracted) an ``out`` that is a file, a
    packed store without ``store``, or with ``store`` anything but a store masra wrote."""
    from masra.data.store import is_store, replace_problem

    if out.is_file():
        raise MasraError("--out is a file, not a folder", file=out)
    if store and (out.exists() or out.is_symlink()):
        problem = replace_problem(out, companions=(INFO_FILE,))
        if problem is not None:
            raise MasraError(f"{problem}; --store only replaces a store masra wrote", file=out)
    if not store and is_store(out):
        raise MasraError("output is a packed store; pass --store to add to it, or another --out", file=out)
    folder = out.with_name(out.name + ".parts") if store else out
    if folder.is_file():
        raise MasraError("is a file, not a folder for the npz files of --store", file=folder)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _pack(parts: Path, out: Path, kind: str, pending: int, info: ExtractionInfo) -> Path | None:
    from masra.data.store import pack_features

    if pending:
        logger.info("store not packed yet: %d items of the whole list still missing in %s (other shards?); "
                    "rerun with --store when every shard is done", pending, parts)
        return None
    pack_features(parts, out, kind=kind, force=True, companions=(INFO_FILE,))
    write_extraction_info(out, info)
    return out


def _feature_file(folder: Path, vid: str) -> Path | None:
    """``{folder}/{vid}.npz``, or None when the video's name cannot be a file name there (e.g. ``..mp4``)."""
    try:
        return child_path(folder, vid, ".npz")
    except MasraError:
        return None


def extract_videos(
    videos: dict[str, Path],
    out: str | Path,
    encoder: ClipEncoder,
    *,
    clip_length: float = 2.0,
    batch_size: int = 32,
    shard: tuple[int, int] | None = None,
    store: bool = False,
    progress: bool = True,
) -> ExtractSummary:
    """Features of every video (vid -> file) of this shard into ``out`` (see the module docstring)."""
    from tqdm import tqdm

    from masra.priors.generate import shard_of

    clip_length = check_clip_length(clip_length)
    out = Path(out)
    folder = _npz_folder(out, store)
    info = ExtractionInfo("video", str(encoder.spec), encoder.fingerprint, encoder.video_dim, clip_length,
                          encoder.image_size)
    check_same_encoder(folder, info.encoder, info.fingerprint, "video")
    write_extraction_info(folder, info)
    mine = {vid: path for vid, path in videos.items() if shard is None or shard_of(vid, shard[1]) == shard[0]}
    summary = ExtractSummary(total=len(mine))
    start = time.perf_counter()
    bar = tqdm(total=len(mine), desc="videos", unit="video", disable=not progress, dynamic_ncols=True)
    for vid, path in mine.items():
        target = _feature_file(folder, vid)
        if target is None:
            summary.failed[vid] = f"{path.name}: its name cannot be a feature file name (it would leave the folder)"
            logger.warning("%s", summary.failed[vid])
            bar.update(1)
            continue
        if target.is_file():
            summary.skipped += 1
            bar.update(1)
            continue
        def clips_done(stage: str, done: int, total: int, vid: str = vid) -> None:
            if stage == "encode":
                bar.set_postfix_str(f"{vid[:30]} {done}/{total} clips")

        try:
            result = extract_video(encoder, path, clip_length, batch_size=batch_size, progress=clips_done)
        except MasraError as err:
            summary.failed[vid] = err.message
            logger.warning("%s: %s", path, err.message)
        else:
            write_npz_atomic(target, features=result.features)
            summary.done += 1
            summary.clips += result.features.shape[0]
        bar.update(1)
    bar.close()
    summary.seconds = time.perf_counter() - start
    if store:
        pending = sum(not (target := _feature_file(folder, vid)) or not target.is_file() for vid in videos)
        summary.store = _pack(folder, out, "video", pending, info)
    return summary


@dataclass(frozen=True)
class QueryRow:
    qid: int | str
    query: str


def read_queries(path: str | Path) -> list[QueryRow]:
    """(qid, query) of every row of an annotation JSONL; a row without them is an error naming its line."""
    rows: list[QueryRow] = []
    seen: dict[str, int] = {}
    for line, obj in iter_jsonl(path):
        qid, query = obj.get("qid"), obj.get("query")
        if not isinstance(qid, (int, str)) or isinstance(qid, bool) or str(qid) == "":
            raise MasraError("missing or invalid qid", file=path, line=line, field="qid")
        if not isinstance(query, str) or not query.strip():
            raise MasraError("missing or empty query", file=path, line=line, field="query")
        if str(qid) in seen:
            if rows[seen[str(qid)]].query != query.strip():
                raise MasraError(f"qid {qid!r} repeated with another query", file=path, line=line, field="qid")
            continue
        seen[str(qid)] = len(rows)
        rows.append(QueryRow(qid, query.strip()))
    if not rows:
        raise MasraError("no rows", file=path)
    return rows


def extract_queries(
    rows: list[QueryRow],
    out: str | Path,
    encoder: ClipEncoder,
    *,
    prefix: str = "qid",
    batch_size: int = 64,
    store: bool = False,
    progress: bool = True,
) -> ExtractSummary:
    """``{prefix}{qid}.npz`` (last_hidden_state, pooler_output) for every row not done yet."""
    from tqdm import tqdm

    out = Path(out)
    folder = _npz_folder(out, store)
    info = ExtractionInfo("text", str(encoder.spec), encoder.fingerprint, encoder.text_dim)
    check_same_encoder(folder, info.encoder, info.fingerprint, "text")
    write_extraction_info(folder, info)
    targets = [child_path(folder, f"{prefix}{row.qid}", ".npz") for row in rows]
    todo = [(row, target) for row, target in zip(rows, targets) if not target.is_file()]
    summary = ExtractSummary(total=len(rows), skipped=len(rows) - len(todo))
    start = time.perf_counter()
    with tqdm(total=len(todo), desc="queries", unit="query", disable=not progress, dynamic_ncols=True) as bar:
        for first in range(0, len(todo), batch_size):
            chunk = todo[first : first + batch_size]
            for (_, target), feats in zip(chunk, encoder.encode_queries([row.query for row, _ in chunk])):
                write_npz_atomic(target, last_hidden_state=feats.last_hidden_state, pooler_output=feats.pooler_output)
            summary.done += len(chunk)
            summary.clips += len(chunk)
            bar.update(len(chunk))
    summary.seconds = time.perf_counter() - start
    if store:
        summary.store = _pack(folder, out, "text", 0, info)
    return summary
