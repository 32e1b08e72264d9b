"""One video file -> CLIP clip features [L, D] on the anchors' clip grid (see ``masra.video.frames``)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from masra.errors import MasraError
from masra.features.encoder import ClipEncoder
from masra.video.frames import VideoDecodeError, clip_centres, iter_clip_frames, probe_video

# progress(stage, done, total): stages "decode" and "encode" here, "ground" in inference.
Progress = Callable[[str, int, int], None]


@dataclass
class VideoFeatures:
    features: np.ndarray  # [L, D] float32, one row per clip
    clip_length: float  # seconds per clip
    duration: float  # seconds, from the container
    frame_times: np.ndarray  # [L] seconds: the clip centre each frame was taken at
    path: str  # the video file


def video_duration(path: str | Path) -> float:
    """The duration of a video file in seconds; MasraError when the file is missing or not a video."""
    path = Path(path)
    if not path.is_file():
        raise MasraError("video file not found", file=path)
    try:
        info = probe_video(path)
    except VideoDecodeError as err:
        raise MasraError(f"not a readable video ({err})", file=path) from None
    if info.duration is None or info.duration <= 0:
        raise MasraError("the container reports no duration; remux it (e.g. ffmpeg -i IN -c copy OUT.mp4)",
                         file=path)
    return info.duration


def extract_video(
    encoder: ClipEncoder,
    path: str | Path,
    clip_length: float,
    *,
    batch_size: int = 32,
    progress: Progress | None = None,
) -> VideoFeatures:
    """Decode one frame per clip in chunks of ``batch_size`` clips and encode each chunk as it comes."""
    if clip_length <= 0:
        raise MasraError("must be positive", field="clip_length")
    if batch_size <= 0:
        raise MasraError("must be positive", field="batch_size")
    duration = video_duration(path)
    total = len(clip_centres(duration, clip_length))
    features = np.zeros((total, encoder.video_dim), dtype=np.float32)
    times = np.zeros(total, dtype=np.float64)
    chunks = iter_clip_frames(path, duration, clip_length, chunk=batch_size, size=encoder.image_size)
    done = 0
    # The next chunk is decoded in a worker thread while this one is encoded (PyAV and torch release the GIL).
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(next, chunks, None)
        while True:
            try:
                chunk = pending.result()
            except VideoDecodeError as err:
                raise MasraError(f"cannot decode the video ({err})", file=path) from None
            if chunk is None:
                break
            pending = pool.submit(next, chunks, None)
            count = len(chunk.frames)
            if progress:
                progress("decode", done + count, total)
            features[done : done + count] = encoder.encode_frames(chunk.frames)
            times[done : done + count] = chunk.times
            done += count
            if progress:
                progress("encode", done, total)
    return VideoFeatures(features=features, clip_length=float(clip_length), duration=duration, frame_times=times,
                         path=str(path))
