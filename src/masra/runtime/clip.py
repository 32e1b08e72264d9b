""":class:`OnnxClipEncoder`: an export's CLIP towers (``masra export --encoder``) on onnxruntime, the torch-free
twin of masra.features.encoder.ClipEncoder's encode_frames / encode_queries (the same NumPy inputs and
outputs: masra.features.clip_inputs)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from masra.extras import require_extra
from masra.features.clip_inputs import QueryFeatures, pixel_values, split_queries, token_ids
from masra.runtime.bundle import (
    IMAGE_INPUT_NAMES,
    IMAGE_MODEL_FILE,
    IMAGE_OUTPUT_NAMES,
    TEXT_INPUT_NAMES,
    TEXT_MODEL_FILE,
    TEXT_OUTPUT_NAMES,
    TOKENIZER_FILE,
    ClipInfo,
)
from masra.runtime.session import open_session


class OnnxClipEncoder:
    """Image embeddings of clip frames and token states of queries, from an export folder."""

    def __init__(self, image: Any, text: Any, tokenizer: Any, info: ClipInfo) -> None:
        self.image, self.text, self.tokenizer, self.info = image, text, tokenizer, info

    @classmethod
    def from_export(cls, folder: str | Path, info: ClipInfo, threads: int | None = None) -> "OnnxClipEncoder":
        require_extra("runtime", "the ONNX CLIP encoder (masra.runtime)", modules=("onnxruntime", "tokenizers"))
        from tokenizers import Tokenizer

        folder = Path(folder)
        return cls(open_session(folder / IMAGE_MODEL_FILE, threads), open_session(folder / TEXT_MODEL_FILE, threads),
                   Tokenizer.from_file(str(folder / TOKENIZER_FILE)), info)

    @property
    def spec(self) -> str:
        return self.info.spec

    @property
    def video_dim(self) -> int:
        return self.info.video_dim

    @property
    def text_dim(self) -> int:
        return self.info.text_dim

    @property
    def image_size(self) -> int:
        return self.info.image_size

    def encode_frames(self, frames: np.ndarray) -> np.ndarray:
        """uint8 RGB frames [n, S, S, 3] -> image embeddings [n, video_dim] float32."""
        return self.image.run(list(IMAGE_OUTPUT_NAMES), {IMAGE_INPUT_NAMES[0]: pixel_values(frames)})[0]

    def encode_queries(self, texts: Sequence[str]) -> list[QueryFeatures]:
        """Token states and pooled embedding of each text (masra.features.encoder's module docstring)."""
        if not texts:
            return []
        ids, mask = token_ids(self.tokenizer, texts)
        states, pooled = self.text.run(list(TEXT_OUTPUT_NAMES), dict(zip(TEXT_INPUT_NAMES, (ids, mask))))
        return split_queries(states, pooled, mask)
