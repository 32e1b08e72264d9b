"""Helpers shared by the highlight-mAP anchor tests (test_eval_tvsum_anchor.py, test_eval_youtube_anchor.py):
generated predictions for a list of ground-truth rows, and their conversion to the per-video saliency tensors
that the transcribed reference loops take (their model's ``outputs['saliency_scores']`` rows).

Predictions are continuous random scores, so no two clips of a video tie: the references' ``torch.argsort``
leaves the order of tied scores unspecified, masra ranks ties by clip index.
"""

from __future__ import annotations

import numpy as np
import torch


def random_predictions(rng: np.random.Generator, gt: list[dict], extra: int = 0) -> list[dict]:
    """One score per clip (plus ``extra`` padding scores, which every evaluator must ignore)."""
    return [{"qid": g["qid"], "pred_saliency_scores": rng.random(len(g["label"]) + extra).tolist()} for g in gt]


def informed_predictions(rng: np.random.Generator, gt: list[dict], scale: float) -> list[dict]:
    """Better-than-chance predictions: each clip's mean label over annotators plus N(0, scale) noise."""
    return [{"qid": g["qid"], "pred_saliency_scores": (np.mean(g["label"], axis=1)
             + rng.normal(scale=scale, size=len(g["label"]))).tolist()} for g in gt]


def saliency_tensors(gt: list[dict], sub: list[dict]) -> list[torch.Tensor]:
    """The submission's scores as one tensor per ground-truth video, in ``gt`` order."""
    preds = {row["qid"]: torch.tensor(row["pred_saliency_scores"]) for row in sub}
    return [preds[g["qid"]] for g in gt]
