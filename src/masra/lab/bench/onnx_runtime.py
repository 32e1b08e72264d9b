"""``masra bench onnx``: the exported model on onnxruntime (masra.runtime.OnnxGrounder) against the torch
model (masra.inference.Grounder) in the same process: one query, and a batch of queries, end to end on raw
features (preparation, forward, post-processing: the same code on both sides but the forward)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from masra.data.batch import GroundingBatch
from masra.lab.bench.measure import alternating_median_seconds
from masra.lab.bench.table import BenchTable, ms, ratio

# Input dims of the default models: QVHighlights' SlowFast + CLIP clips with TEF, CLIP text tokens, MiniLM priors.
QVH_DIMS = {"v_feat_dim": 2304 + 512 + 2, "t_feat_dim": 512, "semantic_dim": 384}


@dataclass
class OnnxRow:
    variant: str
    queries: int  # pairs per call (one padded batch)
    clips: int
    tokens: int
    torch_seconds: float
    onnx_seconds: float
    max_saliency_diff: float  # |onnxruntime - torch| over the batch's saliency


def random_checkpoints(folder: Path) -> dict[str, Path]:
    """Checkpoints of the default config at QVHighlights' dims with random weights: baseline and MASRA (all parts)."""
    from masra.checkpoint import ModelDims, save_checkpoint
    from masra.config import Config
    from masra.model import build_model
    from masra.model.parts import PARTS

    found = {}
    for variant in ("baseline", "masra"):
        cfg = Config()
        for part in PARTS:
            getattr(cfg.model, part.name).enabled = variant == "masra"
        dims = ModelDims(QVH_DIMS["v_feat_dim"], QVH_DIMS["t_feat_dim"],
                         QVH_DIMS["semantic_dim"] if variant == "masra" else None)
        torch.manual_seed(0)
        model, _ = build_model(cfg, dims.v_feat_dim, dims.t_feat_dim, dims.semantic_dim)
        found[variant] = save_checkpoint(folder / variant, model=model, cfg=cfg, dims=dims, state={})
    return found


def bench_export(
    variant: str, export: Path, checkpoint: Path, *, clips: int, tokens: int, batch: int, repeats: int,
    threads: int | None,
) -> list[OnnxRow]:
    """One query and a ``batch``-query call of ``export`` (onnxruntime) and ``checkpoint`` (torch, CPU)."""
    from masra.inference import Grounder
    from masra.runtime import OnnxGrounder

    grounder = Grounder.from_checkpoint(checkpoint, device="cpu")
    # Not spinning: in alternating rounds, onnxruntime's threads spin-waiting after its run would take the CPU
    # from the torch run that follows (on 2 cores that made torch's one-query call several times slower).
    runtime = OnnxGrounder.from_export(export, threads=threads or torch.get_num_threads(), spinning=False)
    rng = np.random.default_rng(0)
    raw_dim = grounder.inputs.v_feat_dim - (2 if grounder.inputs.use_tef else 0)
    videos = [rng.standard_normal((clips, raw_dim)).astype(np.float32) for _ in range(batch)]
    queries = [rng.standard_normal((tokens, grounder.inputs.t_feat_dim)).astype(np.float32) for _ in range(batch)]
    rows = []
    for count in (1, batch):
        torch_preds = grounder.predict_batch(videos[:count], queries[:count])
        onnx_preds = runtime.predict_batch(videos[:count], queries[:count])
        diff = max(float(np.abs(a.saliency - b.saliency).max()) for a, b in zip(torch_preds, onnx_preds))
        seconds = alternating_median_seconds(
            {"torch": lambda: grounder.predict_batch(videos[:count], queries[:count]),
             "onnx": lambda: runtime.predict_batch(videos[:count], queries[:count])},
            torch.device("cpu"), repeats=repeats)
        rows.append(OnnxRow(variant, count, clips, tokens, seconds["torch"], seconds["onnx"], diff))
    return rows


def bench_onnx(
    exports: list[Path] | None, *, clips: int = 75, tokens: int = 20, batch: int = 32, repeats: int = 5,
    threads: int | None = None,
) -> list[OnnxRow]:
    """The given export folders (each against the checkpoint its export.json names), or random baseline and
    MASRA models at QVHighlights' dims exported into a temporary folder."""
    from masra.export import export_checkpoint
    from masra.runtime import read_export

    if exports:
        pairs = [(Path(e).name, Path(e), Path(read_export(e)[1].checkpoint)) for e in exports]
        return [row for name, export, ckpt in pairs for row in bench_export(
            name, export, ckpt, clips=clips, tokens=tokens, batch=batch, repeats=repeats, threads=threads)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="masra-bench-onnx-") as tmp:
        for variant, ckpt in random_checkpoints(Path(tmp)).items():
            export = export_checkpoint(ckpt, Path(tmp) / f"{variant}.onnx")
            rows += bench_export(variant, export, ckpt, clips=clips, tokens=tokens, batch=batch, repeats=repeats,
                                 threads=threads)
    return rows


def exported_inference(
    model: torch.nn.Module, batches: dict[str, GroundingBatch], threads: int | None
) -> dict[str, Callable[[], list[np.ndarray]]]:
    """{name: one onnxruntime run of ``model``'s export on that batch, returning the graph's outputs}: the
    inference jobs of ``masra bench model --runtime onnx``. The graph (masra.export.export_model) is written to
    a temporary folder, loaded and deleted. The session does not spin-wait between runs, so it takes no CPU from
    the other variants' processes while they are timed."""
    from masra.export import export_model
    from masra.runtime.bundle import INPUT_NAMES
    from masra.runtime.session import open_session

    example = next(iter(batches.values()))
    with tempfile.TemporaryDirectory(prefix="masra-bench-model-onnx-") as folder:
        path = Path(folder) / "model.onnx"
        export_model(model, example.video_feats.shape[-1], example.query_feats.shape[-1], path)
        session = open_session(path, threads=threads or torch.get_num_threads(), spinning=False)

    def job(batch: GroundingBatch) -> Callable[[], list[np.ndarray]]:
        inputs = (batch.video_feats, batch.video_mask, batch.query_feats, batch.query_mask)
        feeds = {name: tensor.float().cpu().numpy() for name, tensor in zip(INPUT_NAMES, inputs, strict=True)}
        return lambda: session.run(None, feeds)

    return {name: job(batch) for name, batch in batches.items()}


def onnx_table(rows: list[OnnxRow]) -> BenchTable:
    return BenchTable(
        ["model", "queries", "clips x tokens", "torch", "onnxruntime", "speed-up", "max |Δ saliency|"],
        [[r.variant, str(r.queries), f"{r.clips} x {r.tokens}", ms(r.torch_seconds), ms(r.onnx_seconds),
          ratio(r.onnx_seconds, r.torch_seconds), f"{r.max_saliency_diff:.1e}"] for r in rows],
        caption="end to end on raw features: preparation, forward, post-processing (NMS included)",
    )
