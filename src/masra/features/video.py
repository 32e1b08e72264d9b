"""One video file -> CLIP clip features [L, D] on the anchors' clip grid (see ``masra.video.frames``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from masra.errors import MasraError
from masra.video.frames import VideoDecodeError, clip_centres, iter_clip_frames, measure_duration, probe_video
from masra.video.limits import DURATION_TOLERANCE, MAX_VIDEO_SECONDS, check_clip_length

if TYPE_CHECKING:  # or masra.runtime.clip.OnnxClipEncoder: anything with encode_frames, video_dim, image_size
    from masra.features.encoder import ClipEncoder

logger = logging.getLogger("masra.features")

# progress(stage, done, total): stages "decode" and "encode" here, "ground" in inference.
Progress = Callable[[str, int, int], None]


@dataclass
class VideoFeatures:
    features: np.ndarray  # [L, D] float32, one row per clip
    clip_length: float  # seconds per clip
    duration: float  # seconds of decodable video (masra.features.video.video_duration)
    frame_times: np.ndarray  # [L] seconds: the clip centre each frame was taken at
    path: str  # the video file


def video_duration(path: str | Path) -> float:
    """The duration of a video file in seconds: the container's claim when the video stream really lasts
    that long (within DURATION_TOLERANCE), else the decodable duration, with a warning naming the gap.
    MasraError when the file is missing, not a video, has no decodable frame or lasts over MAX_VIDEO_SECONDS."""
    path = Path(path)
    if not path.is_file():
        raise MasraError("video file not found", file=path)
    try:
        claimed = probe_video(path).duration
        real = measure_duration(path)
    except VideoDecodeError as err:
        raise MasraError(f"not a readable video ({err})", file=path) from None
    if real > MAX_VIDEO_SECONDS:
        raise MasraError(f"its video stream lasts {real:.1f} s; masra reads videos of at most {MAX_VIDEO_SECONDS} s",
                         file=path)
    if claimed is not None and abs(claimed - real) <= DURATION_TOLERANCE:
        return claimed
    if claimed is not None:
        logger.warning("%s: the container says %.1f s but the video stream decodes to %.1f s; using %.1f s",
                       path.name, claimed, real, real)
    return real


def extract_video(
    encoder: "ClipEncoder",
    path: str | Path,
    clip_length: float,
    *,
    batch_size: int = 32,
    progress: Progress | None = None,
) -> VideoFeatures:
    """Decode one frame per clip in chunks of ``batch_size`` clips and encode each chunk as it comes."""
    clip_length = check_clip_length(clip_length)
    if batch_size <= 0:
        raise MasraError("must be positive", field="batch_size")
    duration = video_duration(path)
    total = len(clip_centres(duration, clip_length))
    features = np.zeros((total, encoder.video_dim), dtype=np.float32)
    times = np.zeros(total, dtype=np.float64)
    chunks = iter_clip_frames(path, duration, clip_length, chunk=batch_size, size=encoder.image_size)
    done = 0
    # The next chunk is decoded in a worker thread while this one is encoded (PyAV and the encoder's back end release the GIL).
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
    return VideoFeatures(features=features, clip_length=clip_length, duration=duration, frame_times=times,
                         path=str(path))
