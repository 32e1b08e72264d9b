"""CLIP's inputs and query outputs in NumPy, no torch: image normalisation, tokenization, per-query token states.

One implementation for both back ends: :class:`masra.features.encoder.ClipEncoder` (transformers on torch)
and :class:`masra.runtime.clip.OnnxClipEncoder` (its towers exported as ONNX) prepare frames and texts here
and split their outputs here. The tokenizer is a ``tokenizers.Tokenizer`` (the fast tokenizer that
``from_pretrained`` loads, set up by :func:`set_up_tokenizer`); an export saves it as ``tokenizer.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# OpenAI CLIP's image normalisation (also the HERO extractor's and Moment-DETR's).
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32).reshape(1, 3, 1, 1)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32).reshape(1, 3, 1, 1)
CONTEXT_LENGTH = 77


@dataclass
class QueryFeatures:
    last_hidden_state: np.ndarray  # [N, width] float32, tokens SOT..EOT
    pooler_output: np.ndarray  # [projection_dim] float32


def pixel_values(frames: np.ndarray) -> np.ndarray:
    """uint8 RGB frames [n, S, S, 3] -> CLIP's normalised pixel values [n, 3, S, S] float32."""
    pixels = np.ascontiguousarray(frames).transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray((pixels - CLIP_MEAN) / CLIP_STD)


def set_up_tokenizer(tokenizer: Any, pad_id: int, pad_token: str) -> Any:
    """``tokenizer`` (a ``tokenizers.Tokenizer``) set to truncate at CLIP's 77 tokens (start and end tokens
    kept) and to pad a batch to its longest text with ``pad_token``."""
    tokenizer.enable_truncation(max_length=CONTEXT_LENGTH)
    tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token)
    return tokenizer


def token_ids(tokenizer: Any, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """input_ids and attention_mask [n, T] int64 of ``texts`` (a tokenizer from :func:`set_up_tokenizer`)."""
    encoded = tokenizer.encode_batch(list(texts))
    ids = np.array([e.ids for e in encoded], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
    return ids, mask


def split_queries(states: np.ndarray, pooled: np.ndarray, attention_mask: np.ndarray) -> list[QueryFeatures]:
    """Per text: its valid tokens' states ``states`` [n, T, width] and its pooled embedding ``pooled`` [n, D]."""
    lengths = attention_mask.sum(1)
    return [QueryFeatures(np.asarray(states[i, : int(n)], np.float32), np.asarray(pooled[i], np.float32))
            for i, n in enumerate(lengths)]
