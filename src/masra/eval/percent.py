"""The official evaluator's number formats: 2-decimal percentages and IoU-threshold keys."""

from __future__ import annotations

import math

import numpy as np


def to_percent(value: float | None) -> float | None:
    """100 * value rounded to 2 decimals exactly as the reference does (``float(f"{100*v:.2f}")``).

    None stands for "no query to average over" (the reference would print nan), so the JSON stays valid.
    """
    if value is None or math.isnan(value):
        return None
    return float(f"{100 * value:.2f}")


def official_thresholds(start: float, stop: float, num: int) -> list[float]:
    """``np.linspace(start, stop, num)`` rounded through "%.2f", as the reference does before comparing."""
    return [float(f"{t:.2f}") for t in np.linspace(start, stop, num)]


def threshold_key(threshold: float) -> str:
    """The official key of a threshold: 0.5 -> "0.5", 0.55 -> "0.55"."""
    return str(float(f"{threshold:.2f}"))
