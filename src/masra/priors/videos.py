"""Match annotation vids to video files.

A vid matches a file named ``{vid}.{mp4,mkv,webm,avi}``. A QVHighlights vid ``{ytid}_{start}_{end}`` may
instead match the full YouTube video ``{ytid}.{ext}``; the annotated segment then starts ``start`` seconds
into the file (``VideoJob.offset``). Files are looked up by name in a listing of the folder (or in a list
file), so no path is ever built from a vid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from masra.data.annotations import load_annotations, split_qvh_vid
from masra.errors import MasraError
from masra.video.frames import VIDEO_EXTENSIONS


@dataclass(frozen=True)
class VideoJob:
    vid: str
    path: Path
    duration: float  # seconds of the annotated video (from the annotation file)
    offset: float = 0.0  # where the annotated segment starts inside the file (seconds)


@dataclass(frozen=True)
class AnnotatedVideos:
    durations: dict[str, float]  # vid -> duration, in first-seen order
    dataset: str


def read_annotated_videos(path: str | Path) -> AnnotatedVideos:
    """Every distinct vid of an annotation file with its duration (the largest one given for it)."""
    records = load_annotations(path)
    if not records:
        raise MasraError("no annotation rows", file=path)
    durations: dict[str, float] = {}
    for record in records:
        durations[record.vid] = max(durations.get(record.vid, 0.0), float(record.duration))
    return AnnotatedVideos(durations, records[0].dataset)


def _rank(path: Path) -> int:
    return VIDEO_EXTENSIONS.index(path.suffix.lower())


def index_videos(source: str | Path) -> dict[str, Path]:
    """Video files by name without extension, from a folder (not recursive) or a text file listing one path
    per line (relative paths are relative to the list file; blank lines and ``#`` comments are skipped).
    When two files share a name the extension order mp4 > mkv > webm > avi decides."""
    source = Path(source)
    if source.is_dir():
        paths = [p for p in source.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()]
    elif source.is_file():
        paths = []
        for line_no, line in enumerate(source.read_text(encoding="utf-8").splitlines(), start=1):
            entry = line.strip()
            if not entry or entry.startswith("#"):
                continue
            path = Path(entry) if Path(entry).is_absolute() else source.parent / entry
            if path.suffix.lower() not in VIDEO_EXTENSIONS:
                raise MasraError(f"not a video file ({', '.join(VIDEO_EXTENSIONS)}): {entry}", file=source, line=line_no)
            if not path.is_file():
                raise MasraError(f"video file not found: {entry}", file=source, line=line_no)
            paths.append(path)
    else:
        raise MasraError("no such folder or list file", file=source)
    index: dict[str, Path] = {}
    for path in sorted(paths, key=_rank):
        index.setdefault(path.stem, path)
    return index


def match_videos(durations: dict[str, float], index: dict[str, Path]) -> tuple[list[VideoJob], list[str]]:
    """(jobs for the vids that have a video, vids that have none), both in annotation order."""
    jobs: list[VideoJob] = []
    missing: list[str] = []
    for vid, duration in durations.items():
        if vid in index:
            jobs.append(VideoJob(vid, index[vid], duration))
            continue
        segment = split_qvh_vid(vid)
        if segment is not None and segment[0] in index:
            jobs.append(VideoJob(vid, index[segment[0]], duration, offset=segment[1]))
        else:
            missing.append(vid)
    return jobs, missing
