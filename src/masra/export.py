"""``masra export``: a checkpoint's grounding model as ONNX, with what inference needs beside it
(the folder format: :mod:`masra.runtime.bundle`; its runtime: :mod:`masra.runtime`).

The graph is the model's eval-mode forward (:class:`ExportedForward`): every enabled MASRA part that acts at
inference runs inside it as in torch (DAI's decoupled attention, SORA's layer, LRCA's relation features
when SORA reads them, SGE's enhancement); ESTA's outputs feed only its training loss and are not exported.
Exported with torch.export (``torch.onnx.export(dynamo=True)``, onnxscript), batch, clip count and query
length dynamic.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from masra import __version__
from masra.data.batch import GroundingBatch
from masra.errors import MasraError
from masra.model.feature_inference import InputSpec
from masra.model.postprocess import PostprocessSettings
from masra.runtime.bundle import (
    EXPORT_FILES,
    INFO_FILE,
    INPUT_NAMES,
    MODEL_FILE,
    OUTPUT_NAMES,
    ExportInfo,
    FeatureFiles,
    is_export,
    write_export_info,
)

log = logging.getLogger("masra.export")

# The example batch the graph is traced with: two samples (one padded), clips and tokens well above 1 so
# that no dimension is specialised to a constant.
EXAMPLE_SHAPE = {"batch": 2, "clips": 12, "tokens": 5}
# Largest |onnxruntime - torch| difference of any output that the check after an export accepts.
TOLERANCE = 1e-4


class ExportedForward(nn.Module):
    """The model's forward on plain tensors: (video_feats, video_mask, query_feats, query_mask) ->
    (pred_logits, pred_spans, saliency_scores), the graph's inputs and outputs (masra.runtime.bundle)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, video_feats: torch.Tensor, video_mask: torch.Tensor, query_feats: torch.Tensor, query_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch = GroundingBatch(video_feats=video_feats, video_mask=video_mask, query_feats=query_feats,
                               query_mask=query_mask, meta=[])
        outputs = self.model(batch)
        return outputs["pred_logits"], outputs["pred_spans"], outputs["saliency_scores"]


def example_inputs(
    v_feat_dim: int, t_feat_dim: int, lengths: list[int], tokens: list[int], seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A random padded batch: sample i has ``lengths[i]`` clips and ``tokens[i]`` query tokens, zero padding."""
    rng = np.random.default_rng(seed)
    video = np.zeros((len(lengths), max(lengths), v_feat_dim), np.float32)
    video_mask = np.zeros(video.shape[:2], np.float32)
    query = np.zeros((len(tokens), max(tokens), t_feat_dim), np.float32)
    query_mask = np.zeros(query.shape[:2], np.float32)
    for i, (clips, words) in enumerate(zip(lengths, tokens)):
        video[i, :clips] = rng.standard_normal((clips, v_feat_dim))
        video_mask[i, :clips] = 1
        query[i, :words] = rng.standard_normal((words, t_feat_dim))
        query_mask[i, :words] = 1
    return video, video_mask, query, query_mask


def write_graph(
    module: nn.Module, example: tuple[torch.Tensor, ...], dynamic: dict[str, dict[int, Any]],
    input_names: tuple[str, ...], output_names: tuple[str, ...], path: str | Path,
) -> int:
    """Write ``module``'s eval-mode forward, traced on ``example``, as one ONNX file; returns its opset."""
    import onnx

    with torch.no_grad():
        program = torch.onnx.export(module.eval(), example, dynamo=True, dynamic_shapes=dynamic,
                                    input_names=list(input_names), output_names=list(output_names),
                                    external_data=False, verbose=False)
    program.save(str(path), external_data=False)
    return next(entry.version for entry in onnx.load(str(path), load_external_data=False).opset_import
                if entry.domain in ("", "ai.onnx"))


def export_model(model: nn.Module, v_feat_dim: int, t_feat_dim: int, path: str | Path) -> int:
    """Write ``model`` (a GroundingModel) as an ONNX file at ``path``; returns its opset."""
    from torch.export import Dim

    shape = EXAMPLE_SHAPE
    lengths = [shape["clips"], shape["clips"] - 3]
    tokens = [shape["tokens"], shape["tokens"] - 2]
    example = tuple(torch.from_numpy(a) for a in example_inputs(v_feat_dim, t_feat_dim, lengths, tokens))
    batch, clips, words = Dim("batch", min=1), Dim("clips", min=1), Dim("tokens", min=1)
    dynamic = {"video_feats": {0: batch, 1: clips}, "video_mask": {0: batch, 1: clips},
               "query_feats": {0: batch, 1: words}, "query_mask": {0: batch, 1: words}}
    return write_graph(ExportedForward(model), example, dynamic, INPUT_NAMES, OUTPUT_NAMES, path)


def largest_difference(
    module: nn.Module, session: Any, inputs: tuple[np.ndarray, ...], input_names: tuple[str, ...],
    output_names: tuple[str, ...],
) -> float:
    """max |torch - onnxruntime| over the outputs of ``module`` (its forward takes ``input_names`` and returns
    ``output_names``, as the graph's) on host arrays ``inputs``."""
    with torch.inference_mode():
        expected = module.eval()(*(torch.from_numpy(a) for a in inputs))
    expected = (expected,) if isinstance(expected, torch.Tensor) else expected
    got = session.run(list(output_names), dict(zip(input_names, inputs)))
    return max(float(np.abs(e.float().numpy() - g).max()) for e, g in zip(expected, got))


def _prepare_out(out: Path, force: bool) -> None:
    """Refuse an ``out`` that masra did not create; a previous export only with ``force``."""
    if not out.exists():
        return
    if not out.is_dir():
        raise MasraError("output exists and is not a folder", file=out)
    if not any(out.iterdir()):
        out.rmdir()
        return
    if not is_export(out) or {p.name for p in out.iterdir()} - set(EXPORT_FILES):
        raise MasraError(f"output folder is not empty and is not a masra export (only {', '.join(EXPORT_FILES)}); "
                         "masra replaces only its own exports", file=out)
    if not force:
        raise MasraError("output folder holds an export; pass --force to replace it", file=out)
    shutil.rmtree(out)


def export_checkpoint(
    checkpoint: str | Path, out: str | Path, *, encoder: str | None = None, force: bool = False
) -> Path:
    """Export a checkpoint folder (or a run folder: its last checkpoint) into the folder ``out``; with
    ``encoder`` ("clip:NAME_OR_PATH", checked to be the one the checkpoint records) its CLIP towers and
    tokenizer too (masra.export_clip), for video files.

    Written under ``out.tmp`` and renamed into place, after each graph was run on onnxruntime (when
    installed) against its torch module (a difference above TOLERANCE is refused).
    """
    from masra.checkpoint import find_checkpoint
    from masra.inference.loading import load_model

    out = Path(out)
    folder = find_checkpoint(checkpoint)
    model, cfg, dims = load_model(folder, "cpu")
    clip_encoder = None
    if encoder is not None:
        from masra.inference.video import load_checked_encoder

        clip_encoder = load_checked_encoder(encoder, torch.device("cpu"), dims, cfg.data.use_tef, where=str(folder))
    _prepare_out(out, force)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    opset = export_model(model, dims.v_feat_dim, dims.t_feat_dim, tmp / MODEL_FILE)
    check_export(model, tmp / MODEL_FILE, dims.v_feat_dim, dims.t_feat_dim)
    clip = None
    if clip_encoder is not None:
        from masra.export_clip import export_clip

        clip = export_clip(clip_encoder, tmp)
    parts = [part.name for part in model.parts]
    info = ExportInfo(opset=opset, dataset=cfg.data.dataset, parts=parts, inputs=InputSpec.of(cfg, dims),
                      postprocess=PostprocessSettings.of(cfg.eval), feature_encoder=dims.feature_encoder,
                      feature_encoder_fingerprint=dims.feature_encoder_fingerprint, checkpoint=str(folder.resolve()),
                      masra_version=__version__, clip=clip, data=FeatureFiles.of(cfg))
    write_export_info(tmp, info)
    tmp.rename(out)
    return out


def check_export(model: nn.Module, onnx_path: Path, v_feat_dim: int, t_feat_dim: int) -> float | None:
    """The largest difference of the export from the torch model on a padded random batch (None without
    onnxruntime); a MasraError above TOLERANCE."""
    inputs = example_inputs(v_feat_dim, t_feat_dim, [40, 17], [9, 3], seed=1)
    return check_graph(ExportedForward(model), onnx_path, inputs, INPUT_NAMES, OUTPUT_NAMES)


def check_graph(
    module: nn.Module, onnx_path: Path, inputs: tuple[np.ndarray, ...], input_names: tuple[str, ...],
    output_names: tuple[str, ...],
) -> float | None:
    """:func:`largest_difference` of the ONNX file from ``module`` on ``inputs`` (None without onnxruntime);
    a MasraError above TOLERANCE."""
    from masra.extras import missing_modules

    if missing_modules("runtime", ("onnxruntime",)):
        log.warning("onnxruntime is not installed: %s was not checked against torch", onnx_path.name)
        return None
    from masra.runtime.session import open_session

    difference = largest_difference(module, open_session(onnx_path), inputs, input_names, output_names)
    if difference > TOLERANCE:
        raise MasraError(f"the export differs from torch by {difference:.2e} (> {TOLERANCE})", file=onnx_path)
    log.info("%s checked on onnxruntime: largest difference from torch %.1e", onnx_path.name, difference)
    return difference
