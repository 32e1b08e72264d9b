"""The result of grounding a query in a whole video file (``Grounder.predict_video``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class VideoPrediction:
    query: str
    vid: str  # the video file's stem
    duration: float  # seconds
    clip_length: float  # seconds per clip
    windows: list[tuple[float, float, float]]  # (start_s, end_s, score), best first
    saliency: np.ndarray  # [L] float32, one score per clip of the whole video
    n_windows: int = 1  # sliding windows the video was grounded in
    qid: int | str = 0

    def to_row(self) -> dict[str, Any]:
        """The official submission layout (numbers to 4 decimals)."""
        return {
            "qid": self.qid,
            "query": self.query,
            "vid": self.vid,
            "pred_relevant_windows": [[round(s, 4), round(e, 4), round(p, 4)] for s, e, p in self.windows],
            "pred_saliency_scores": [round(float(v), 4) for v in self.saliency],
        }
