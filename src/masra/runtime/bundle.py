"""An export folder (``masra export``): ``model.onnx`` (the grounding model) and ``export.json`` (what inference
needs beside it). This module owns the folder's format: the exporter writes through :func:`write_export_info`,
the runtime reads through :func:`read_export`. No torch.

``export.json``: ``format`` ("masra-onnx"), ``format_version``, ``model`` (the ONNX file), ``opset``,
``dataset``, ``parts`` (the MASRA parts the graph contains), ``inputs`` (:class:`InputSpec`: dims, TEF,
normalisation, max_v_l / max_q_l, clip length), ``postprocess`` (:class:`PostprocessSettings`, the
checkpoint's ``eval.*``), ``encoder`` (``name`` and ``fingerprint`` of the encoder that made the training
features, or nulls), ``source`` (the checkpoint and the masra version that exported it), ``clip``
(:class:`ClipInfo`, or null when the CLIP encoder was not exported) and ``data`` (:class:`FeatureFiles`: where
the checkpoint's config reads its splits and feature files, for predicting on feature files; null in exports
written before it existed).

The graph: inputs ``video_feats`` [B, L, Dv], ``video_mask`` [B, L], ``query_feats`` [B, N, Dt],
``query_mask`` [B, N] (float32, masks 1 = valid, batch / clip count / query length dynamic); outputs
``pred_logits`` [B, Q, 2], ``pred_spans`` [B, Q, 2], ``saliency_scores`` [B, L].

With the CLIP encoder (``masra export --encoder``): ``image_encoder.onnx`` (``pixel_values`` [n, 3, S, S] float32,
normalised by masra.features.clip_inputs -> ``image_embeds`` [n, video_dim]), ``text_encoder.onnx``
(``input_ids``, ``attention_mask`` [n, T] int64 -> ``last_hidden_state`` [n, T, text_dim], ``text_embeds``
[n, projection_dim]; n and T dynamic) and ``tokenizer.json`` (a ``tokenizers.Tokenizer``, truncation and
padding set).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from masra.data.jsonl import write_json
from masra.errors import MasraError
from masra.model.feature_inference import InputSpec
from masra.model.postprocess import PostprocessSettings
from masra.model.split_inference import FeatureFiles

FORMAT = "masra-onnx"
FORMAT_VERSION = 1
MODEL_FILE = "model.onnx"
INFO_FILE = "export.json"
INPUT_NAMES = ("video_feats", "video_mask", "query_feats", "query_mask")
OUTPUT_NAMES = ("pred_logits", "pred_spans", "saliency_scores")
IMAGE_MODEL_FILE = "image_encoder.onnx"
TEXT_MODEL_FILE = "text_encoder.onnx"
TOKENIZER_FILE = "tokenizer.json"
IMAGE_INPUT_NAMES, IMAGE_OUTPUT_NAMES = ("pixel_values",), ("image_embeds",)
TEXT_INPUT_NAMES, TEXT_OUTPUT_NAMES = ("input_ids", "attention_mask"), ("last_hidden_state", "text_embeds")
# Every file an export folder may hold (masra export replaces a folder holding only these).
EXPORT_FILES = (MODEL_FILE, INFO_FILE, IMAGE_MODEL_FILE, TEXT_MODEL_FILE, TOKENIZER_FILE)


@dataclass(frozen=True)
class ClipInfo:
    """The exported CLIP encoder (``clip`` in ``export.json``)."""

    spec: str  # clip:NAME_OR_PATH it was exported from
    fingerprint: str  # masra.features.encoder.ClipEncoder.fingerprint
    image_size: int
    video_dim: int
    text_dim: int


@dataclass(frozen=True)
class ExportInfo:
    """The content of ``export.json``."""

    opset: int
    dataset: str
    parts: list[str]
    inputs: InputSpec
    postprocess: PostprocessSettings
    feature_encoder: str | None
    feature_encoder_fingerprint: str | None
    checkpoint: str
    masra_version: str
    clip: ClipInfo | None = None
    data: FeatureFiles | None = None


def is_export(folder: str | Path) -> bool:
    """Whether ``folder`` holds an ``export.json`` of this format (a folder masra export wrote)."""
    path = Path(folder) / INFO_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def write_export_info(folder: str | Path, info: ExportInfo) -> Path:
    """``folder/export.json`` (atomically)."""
    path = Path(folder) / INFO_FILE
    write_json(path, {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": MODEL_FILE,
        "opset": info.opset,
        "dataset": info.dataset,
        "parts": list(info.parts),
        "inputs": dataclasses.asdict(info.inputs),
        "postprocess": dataclasses.asdict(info.postprocess),
        "encoder": {"name": info.feature_encoder, "fingerprint": info.feature_encoder_fingerprint},
        "source": {"checkpoint": info.checkpoint, "masra_version": info.masra_version},
        "clip": None if info.clip is None else dataclasses.asdict(info.clip),
        "data": None if info.data is None else dataclasses.asdict(info.data),
    }, indent=2)
    return path


def _section(raw: dict[str, Any], key: str, kind: type, path: Path) -> Any:
    """``raw[key]`` as the dataclass ``kind``; every field required, no other key."""
    value = raw.get(key)
    names = {f.name for f in dataclasses.fields(kind)}
    if not isinstance(value, dict) or set(value) != names:
        raise MasraError(f"must be an object with the keys {', '.join(sorted(names))}", file=path, field=key)
    return kind(**value)


def read_export(folder: str | Path) -> tuple[Path, ExportInfo]:
    """(the ONNX file, the checked ``export.json``) of an export folder."""
    folder = Path(folder)
    path = folder / INFO_FILE
    if not path.is_file():
        raise MasraError(f"not a masra export (no {INFO_FILE}; write one with masra export)", file=folder)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise MasraError(f"cannot read: {err}", file=path) from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise MasraError(f"not a masra export (format is not {FORMAT!r})", file=path, field="format")
    if raw.get("format_version") != FORMAT_VERSION:
        raise MasraError(f"format_version {raw.get('format_version')!r}; this masra reads {FORMAT_VERSION}",
                         file=path, field="format_version")
    encoder = raw.get("encoder")
    source = raw.get("source")
    if not isinstance(encoder, dict) or not isinstance(source, dict):
        raise MasraError("encoder and source must be objects", file=path, field="encoder")
    model = folder / str(raw.get("model", MODEL_FILE))
    if not model.is_file():
        raise MasraError("the ONNX model is missing", file=model)
    clip = None if raw.get("clip") is None else _section(raw, "clip", ClipInfo, path)
    data = None if raw.get("data") is None else _section(raw, "data", FeatureFiles, path)
    for name in (IMAGE_MODEL_FILE, TEXT_MODEL_FILE, TOKENIZER_FILE) if clip is not None else ():
        if not (folder / name).is_file():
            raise MasraError("the export's CLIP encoder is missing this file", file=folder / name)
    info = ExportInfo(
        opset=int(raw.get("opset", 0)),
        dataset=str(raw.get("dataset", "")),
        parts=[str(part) for part in raw.get("parts", [])],
        inputs=_section(raw, "inputs", InputSpec, path),
        postprocess=_section(raw, "postprocess", PostprocessSettings, path),
        feature_encoder=encoder.get("name"),
        feature_encoder_fingerprint=encoder.get("fingerprint"),
        checkpoint=str(source.get("checkpoint", "")),
        masra_version=str(source.get("masra_version", "")),
        clip=clip,
        data=data,
    )
    return model, info
