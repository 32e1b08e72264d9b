"""The hard regime (``masra demo --data hard``): anchor-sized features with a weak, drifting, dense signal.

Same real annotations, timelines, distractor events and noisy priors as the planted regime
(``masra.lab.demo.synthetic``); what differs is how a sentence's content becomes clip features:

- two sources in the anchors' layout, ``video/slowfast`` (2,304-d) and ``video/clip`` (512-d), which the loader
  normalises one by one and concatenates (2,816 + TEF), stored as float16 (1,600 videos x ~75 clips x 2,816
  values would be ~1.3 GB as float32, ~0.7 GB as float16);
- a different family of maps: a random two-layer ReLU network (piecewise linear, not a tanh) into a
  ``signal_rank``-dimensional content space, rotated by a random orthonormal basis into *all* dimensions of
  each source (not into a block of coordinates), so no single dimension carries more than a sliver of it;
- a low signal-to-noise ratio: white noise of norm ``noise`` per source against a full-strength signal of
  norm ``sqrt(share)``;
- slow drift: a per-video random walk along time (norm ``drift``), so the features wander within a video;
- stronger distractors: background events carry other queries' content at the strength of relevant clips,
  half of them the query's nearest neighbours; prior event spans jitter by 4 s, 15 % of captions are wrong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from masra.lab.demo.events import NoiseRates, Timeline
from masra.lab.demo.synthetic import TimelineSpec, clip_content, correlated_noise, scene_vector

def _hard_prior_noise() -> NoiseRates:
    return NoiseRates(wrong_caption=0.15, span_shift_s=4.0)


@dataclass(frozen=True)
class HardSpec(TimelineSpec):
    """Knobs of the hard regime (see the module docstring)."""

    regime: ClassVar[str] = "hard"
    background_strength: tuple[float, float] = (0.5, 1.0)
    confuser_rate: float = 0.5
    priors: NoiseRates = field(default_factory=_hard_prior_noise)
    slowfast_dim: int = 2304
    clip_dim: int = 512
    signal_rank: int = 64  # dimension of the content space the map writes into
    map_hidden: int = 256  # width of the random ReLU network
    clip_share: float = 0.6  # share of the signal energy in the CLIP-sized source (the rest in the SlowFast one)
    noise: float = 1.5  # norm of the per-clip noise per source (a full-strength signal has norm sqrt(share))
    noise_correlation: float = 0.3  # AR(1) coefficient of that noise along time
    drift: float = 0.8  # RMS norm of the slow per-video random walk per source
    scene: float = 0.5  # norm of the per-video nuisance vector per source

    def sources(self) -> dict[str, int]:
        return {"slowfast": self.slowfast_dim, "clip": self.clip_dim}

    def _shares(self) -> dict[str, float]:
        return {"slowfast": 1.0 - self.clip_share, "clip": self.clip_share}

    def content(self, embeddings: np.ndarray, seed: int) -> np.ndarray:
        """[n, signal_rank] unit vectors: a random two-layer ReLU network of the sentence embeddings."""
        rng = np.random.default_rng([seed, 104729])
        w1 = rng.standard_normal((embeddings.shape[1], self.map_hidden)) * np.sqrt(2.0)
        b1 = rng.standard_normal(self.map_hidden) * 0.5
        w2 = rng.standard_normal((self.map_hidden, self.signal_rank))
        hidden = np.maximum(embeddings.astype(np.float64) @ w1 + b1, 0.0)
        out = (hidden - expected_relu(b1, np.sqrt(2.0))) @ w2  # centred: no content-free common direction
        return out / np.linalg.norm(out, axis=1, keepdims=True).clip(min=1e-12)

    def signals(self, embeddings: np.ndarray, seed: int) -> np.ndarray:
        """[n, slowfast_dim + clip_dim]: the content rotated into every dimension of each source by a random
        orthonormal basis, scaled by the source's share of the signal energy."""
        content = self.content(embeddings, seed)  # [n, rank]
        rng = np.random.default_rng([seed, 15485863])
        parts = []
        for name, width in self.sources().items():
            basis, _ = np.linalg.qr(rng.standard_normal((width, self.signal_rank)))  # [width, rank], orthonormal
            parts.append(np.sqrt(self._shares()[name]) * content @ basis.T)
        return np.concatenate(parts, axis=1)

    def features(self, timeline: Timeline, signals: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        signal = clip_content(timeline, signals)  # [L, slowfast_dim + clip_dim]
        n, out, start = timeline.n_clips, {}, 0
        for name, width in self.sources().items():
            nuisance = (
                self.noise * correlated_noise(n, width, self.noise_correlation, rng)
                + slow_drift(n, width, self.drift, rng)
                + scene_vector(width, self.scene, rng)
            )
            out[name] = (signal[:, start : start + width] + nuisance).astype(np.float16)
            start += width
        return out


def expected_relu(mean: np.ndarray, std: float) -> np.ndarray:
    """E[max(z, 0)] for z ~ N(mean, std²), elementwise: what a unit-norm input gives a hidden unit on average."""
    t = mean / std
    pdf = np.exp(-0.5 * t**2) / np.sqrt(2.0 * np.pi)
    cdf = 0.5 * (1.0 + np.vectorize(math.erf)(t / np.sqrt(2.0)))
    return std * pdf + mean * cdf


def slow_drift(n: int, dim: int, norm: float, rng: np.random.Generator) -> np.ndarray:
    """[n, dim] a random walk along time, centred, scaled so its rows have RMS norm ``norm``."""
    walk = np.cumsum(rng.standard_normal((n, dim)), axis=0)
    walk -= walk.mean(axis=0, keepdims=True)
    rms = np.sqrt((walk**2).sum(axis=1).mean())
    return walk * (norm / rms) if rms > 0 else walk
