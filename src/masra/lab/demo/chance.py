"""Chance level: a predictor that knows nothing about the video or the query, scored by the official evaluator."""

from __future__ import annotations

from typing import Any

import numpy as np

from masra.config import EvalConfig
from masra.model.postprocess import round_windows


def random_predictions(
    rows: list[dict[str, Any]], seed: int, *, clip_length: float = 2.0, n_windows: int = 10
) -> list[dict[str, Any]]:
    """Per row: ``n_windows`` windows with uniform random centre, width and score, and uniform random saliency
    (QVHighlights post-processing applied, like a model's submission)."""
    rng = np.random.default_rng(seed)
    out = []
    for row in rows:
        duration = float(row["duration"])
        centre, width = rng.random(n_windows) * duration, rng.random(n_windows) * duration
        starts, ends = np.clip(centre - width / 2, 0, duration), np.clip(centre + width / 2, 0, duration)
        windows = sorted(
            ([float(s), float(e), round(float(p), 4)] for s, e, p in zip(starts, ends, rng.random(n_windows))),
            key=lambda w: w[2],
            reverse=True,
        )
        out.append(
            {
                "qid": row["qid"],
                "query": row["query"],
                "vid": row["vid"],
                "pred_relevant_windows": round_windows(windows, EvalConfig().postprocess, clip_length),
                "pred_saliency_scores": [round(float(s), 4) for s in rng.random(int(duration / clip_length))],
            }
        )
    return out


def chance_metrics(rows: list[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    """The official metrics of :func:`random_predictions` on ``rows`` (which carry the ground truth)."""
    from masra.eval import evaluate

    return evaluate("qvhighlights", random_predictions(rows, seed), rows)
