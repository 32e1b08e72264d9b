"""Frame sampling from video files, shared by prior generation (``masra priors``) and feature extraction
(``masra features``): seek-based decoding with PyAV, resizing, JPEG data URLs, CLIP-ready clip frames.

For each requested timestamp the decoder seeks to the keyframe at or before it and decodes forward to the
first frame at or after it (or, for clip frames, keeps the last frame before it). When that keyframe is not
past the current decode position, decoding simply continues: a seek would land on an earlier keyframe and
decode the same frames again. Keyframe times come from the packets (a demux pass, no decoding); files
without them fall back to seeking when the next timestamp is more than ``seek_gap`` seconds ahead.
Containers whose seeking is unreliable (MPEG-TS, AVI) are decoded sequentially instead; frames are timed and
turned upright as ffmpeg does, and their area and output size are capped before decoding
(:mod:`masra.video.decoding`, :mod:`masra.video.limits`).
"""

from __future__ import annotations

import base64
import bisect
import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from masra.video import limits
from masra.video.decoding import (
    VideoDecodeError,
    decode_timed,
    is_seekable,
    open_stream,
    start_of,
    time_base_of,
    upright_image,
)

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi")


@dataclass(frozen=True)
class VideoInfo:
    duration: float | None  # seconds, from the container (None when the container does not say)
    width: int
    height: int
    fps: float | None


def probe_video(path: str | Path) -> VideoInfo:
    """Container metadata of the first video stream, without decoding."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoDecodeError(f"{Path(path).name}: no video stream")
            stream = container.streams.video[0]
            duration = None
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / 1_000_000
            fps = float(stream.average_rate) if stream.average_rate else None
            return VideoInfo(duration, stream.codec_context.width, stream.codec_context.height, fps)
    except av.FFmpegError as err:
        raise VideoDecodeError(f"{Path(path).name}: {err}") from None


@dataclass(frozen=True)
class _Packets:
    keyframes: list[float]  # presentation times of the keyframes, sorted ([] when the packets carry none)
    end: float | None  # the latest packet end (timestamp + duration), seconds


def _scan_packets(container: av.container.InputContainer, stream: av.VideoStream) -> _Packets:
    """Keyframe times and the end of the packets, from the packets alone (a demux pass, no decoding)."""
    time_base = time_base_of(stream)
    keyframes: list[float] = []
    end: float | None = None
    for packet in container.demux(stream):
        stamp = packet.pts if packet.pts is not None else packet.dts
        if stamp is None:
            continue
        if packet.is_keyframe and packet.pts is not None:
            keyframes.append(float(packet.pts * time_base))
        end = max(end or -math.inf, float((stamp + (packet.duration or 0)) * time_base))
    return _Packets(sorted(keyframes), end)


def measure_duration(path: str | Path) -> float:
    """Seconds from the stream's start to the end of its last decodable frame, whatever the container claims.

    The packets are read without decoding; in a seekable container the stream is then decoded from its last
    keyframe (from an earlier one when that gives no frame: a file cut short) to its end; in other containers,
    or without keyframe marks, the end of the last packet is taken. Raises VideoDecodeError when no frame decodes.
    """
    name = Path(path).name
    try:
        with av.open(str(path)) as container:
            stream = open_stream(container, name)
            start, time_base = start_of(stream), time_base_of(stream)
            packets = _scan_packets(container, stream)
            frame_step = 1 / float(stream.average_rate) if stream.average_rate else 0.0
            if is_seekable(container) and packets.keyframes:
                for key in reversed(packets.keyframes[-3:]):
                    container.seek(int(key / time_base), stream=stream, backward=True, any_frame=False)
                    end = None
                    for time, frame in decode_timed(container, stream):
                        end = time + (float(frame.duration * time_base) if frame.duration else frame_step)
                    if end is not None:
                        return end - start
            elif packets.end is not None:
                return packets.end - start
    except av.FFmpegError as err:
        raise VideoDecodeError(f"{name}: {err}") from None
    raise VideoDecodeError(f"{name}: no frame could be decoded")


def iter_frames(
    path: str | Path,
    timestamps: Sequence[float],
    *,
    short_side: int = 336,
    exact_short_side: bool = False,
    before: bool = False,
    seek_gap: float = 4.0,
    tail_tolerance: float = 2.0,
) -> Iterator[tuple[int, Image.Image | None]]:
    """(index, image) for every timestamp, in time order; the images as :func:`grab_frames` describes them.
    ``before``: take the last frame strictly before each timestamp instead of the first one at or after it
    (ffmpeg's fps filter; the first frame when none is before).

    In a seekable container (:mod:`masra.video.decoding`), decoding jumps (seeks) to the last keyframe before
    a timestamp whenever that keyframe lies past the current decode position, so the frames between are
    never decoded; otherwise it decodes on. Without keyframe times in the packets, it seeks when the next
    timestamp is more than ``seek_gap`` s ahead. Other containers are decoded from the start, sequentially.
    Only the returned frames are converted to RGB, resized and turned upright.
    """
    name = Path(path).name
    order = sorted(range(len(timestamps)), key=lambda i: timestamps[i])
    if not order:
        return
    try:
        with av.open(str(path)) as container:
            stream = open_stream(container, name)
            time_base = time_base_of(stream)
            start = start_of(stream)
            seekable = is_seekable(container)
            keyframes = _scan_packets(container, stream).keyframes if seekable and len(order) > 1 else []
            # The keyframe a timestamp's frame is decoded from: the last one at (or, ``before``, strictly before) it.
            eps = -1e-6 if before else 1e-6

            decoded = None if seekable else decode_timed(container, stream)  # frames since the last seek
            last_frame: av.VideoFrame | None = None  # the newest decoded frame
            previous: av.VideoFrame | None = None  # the frame decoded before it
            last_time = -math.inf
            exhausted = False
            decoded_any = False
            for index in order:
                target = start + max(0.0, float(timestamps[index]))
                k = bisect.bisect_right(keyframes, target + eps) - 1
                key = keyframes[k] if k >= 0 else None
                jump = key > last_time + 1e-6 if key is not None else target - last_time > seek_gap
                if seekable and not exhausted and (decoded is None or jump):
                    seek_to = key if key is not None else target
                    container.seek(int(seek_to / time_base), stream=stream, backward=True, any_frame=False)
                    decoded = decode_timed(container, stream)
                    last_frame, previous, last_time = None, None, -math.inf
                while not exhausted and last_time < target - 1e-6:
                    timed = next(decoded, None)
                    if timed is None:
                        exhausted = True
                        break
                    previous, last_frame, last_time = last_frame, timed[1], timed[0]
                    decoded_any = True
                chosen = last_frame
                if before and previous is not None and last_time >= target - 1e-6:
                    chosen = previous  # the last frame strictly before the timestamp
                if chosen is None or (exhausted and target - last_time > tail_tolerance):
                    yield index, None
                    continue
                yield index, upright_image(chosen, short_side, exact=exact_short_side)
            if not decoded_any:
                raise VideoDecodeError(f"{name}: no frame could be decoded")
    except av.FFmpegError as err:
        raise VideoDecodeError(f"{name}: {err}") from None


def grab_frames(path: str | Path, timestamps: Sequence[float], **options: Any) -> list[Image.Image | None]:
    """One RGB image per timestamp (seconds from the start of the video), resized so that the shorter side
    is at most ``short_side`` (``exact_short_side``: exactly ``short_side``, upscaling small videos, bicubic).
    A timestamp past the last frame gets that last frame when it lies within ``tail_tolerance`` seconds of
    it, else None. Raises VideoDecodeError when the file cannot be decoded or yields no frame at all.
    ``options`` are :func:`iter_frames`'s keywords.
    """
    images: list[Image.Image | None] = [None] * len(timestamps)
    for index, image in iter_frames(path, timestamps, **options):
        images[index] = image
    return images


def resize_short_side(image: Image.Image, short_side: int) -> Image.Image:
    """A copy whose shorter side is at most ``short_side`` (never upscaled; see ``limits.output_size``)."""
    size = limits.output_size(image.width, image.height, short_side, exact=False)
    return image if size == image.size else image.resize(size, Image.Resampling.BILINEAR)


def jpeg_data_url(image: Image.Image, *, quality: int = 85) -> str:
    """The image as an in-memory JPEG, base64-encoded in a ``data:image/jpeg;base64,...`` URL."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def clip_centres(duration: float, clip_length: float) -> list[float]:
    """Centre time of every clip of ``clip_length`` seconds covering [0, duration] (last clip may be short)."""
    n_clips = max(1, math.ceil(duration / clip_length - 1e-9))
    return [min((i + 0.5) * clip_length, duration) for i in range(n_clips)]


def event_times(duration: float, *, interval: float = 2.0, max_frames: int = 64) -> list[float]:
    """Timestamps for the event prompt: one frame per ``interval`` seconds, at most ``max_frames``,
    evenly spread over [0, duration] (each at the centre of its slice)."""
    n_frames = max(1, min(max_frames, math.floor(duration / interval)))
    step = duration / n_frames
    return [(k + 0.5) * step for k in range(n_frames)]


# ----- clip frames for feature extraction ----------------------------------------------------------------
CLIP_FRAME_SIZE = 224


@dataclass(frozen=True)
class ClipFrames:
    """Frames of consecutive clips, ready for an image encoder (before mean/std normalisation)."""

    frames: np.ndarray  # [n, size, size, 3] uint8 RGB, one centre-cropped frame per clip
    times: np.ndarray  # [n] float64, the clip centre each frame was taken at (seconds)


def clip_count(duration: float, clip_length: float) -> int:
    """Number of clips of ``clip_length`` seconds covering [0, duration] (the last one may be short)."""
    return len(clip_centres(duration, clip_length))


def center_crop(image: Image.Image, size: int) -> np.ndarray:
    """The central ``size`` x ``size`` square of ``image`` as uint8 [size, size, 3] (HERO's crop offsets)."""
    left, top = (image.width - size) // 2, (image.height - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)).convert("RGB"), dtype=np.uint8)


def iter_clip_frames(
    path: str | Path, duration: float, clip_length: float, *, chunk: int = 32, size: int = CLIP_FRAME_SIZE
) -> Iterator[ClipFrames]:
    """One frame per clip of a video of ``duration`` seconds, in chunks of ``chunk`` consecutive clips.

    Clip k covers [k*clip_length, (k+1)*clip_length); its frame is the last frame strictly before the clip
    centre (k+0.5)*clip_length (the first frame when none is), the frame ffmpeg's ``fps=1/clip_length``
    filter outputs for clip k (HERO extractor, Moment-DETR's ``run_on_video``): it rounds each frame time to
    the nearest multiple of clip_length and keeps, per multiple, the last frame rounded to it or below. Each
    frame is resized to a shorter side of exactly ``size`` (bicubic, swscale's as in ffmpeg's ``scale``) and
    centre-cropped to ``size`` x ``size``. A clip whose centre lies past the last decodable frame (container
    durations can overstate the stream) repeats the previous clip's frame.
    """
    times = clip_centres(duration, clip_length)
    batch: list[np.ndarray] = []
    previous: np.ndarray | None = None
    frames = iter_frames(path, times, short_side=size, exact_short_side=True, before=True, tail_tolerance=clip_length)
    for index, image in frames:
        if image is not None:
            previous = center_crop(image, size)
        if previous is None:
            raise VideoDecodeError(f"{Path(path).name}: no frame at {times[index]:.2f} s")
        batch.append(previous)
        if len(batch) == chunk or index == len(times) - 1:
            first = index + 1 - len(batch)
            yield ClipFrames(frames=np.stack(batch), times=np.asarray(times[first : index + 1], dtype=np.float64))
            batch = []


def decode_clip_frames(
    path: str | Path, duration: float, clip_length: float, *, size: int = CLIP_FRAME_SIZE
) -> ClipFrames:
    """All clip frames of a video at once (see :func:`iter_clip_frames`)."""
    chunks = list(iter_clip_frames(path, duration, clip_length, size=size))
    return ClipFrames(frames=np.concatenate([c.frames for c in chunks]),
                      times=np.concatenate([c.times for c in chunks]))
