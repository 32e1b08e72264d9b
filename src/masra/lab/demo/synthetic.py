"""The demo's synthetic dataset: real QVHighlights annotations, planted video features, noisy MLLM priors.

What is real: every query, duration, ground-truth window and saliency score (rows shipped in
``masra/assets/qvhighlights``) and the text features (MiniLM token states of the real query).
What is synthetic: the video features. Each clip carries a noisy signal of the event it belongs to,
``strength_i * f(e_k)`` where ``e_k`` is the MiniLM sentence embedding of the event's sentence and ``f`` a
fixed random nonlinear map (seeded) into the video space; plus temporally correlated noise, a per-video
nuisance vector and pure distractor dimensions. Clips in the query's windows carry the query's sentence,
with a gain that follows their real saliency; background clips carry other real queries, some of them the
query's nearest neighbours (confusers). A model therefore has to learn the text-to-video mapping to score.

Files are written in the anchors' layout, so ``masra train`` reads them like real features:
``video/{vid}.npz`` (``features`` [L, D]), ``text/qid{qid}.npz`` (``last_hidden_state`` [N, 384],
``pooler_output`` [384]), ``priors/{vid}.npz`` (training videos only), ``train.jsonl``, ``val.jsonl``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
from tqdm import tqdm

from masra.data.jsonl import read_jsonl, write_jsonl
from masra.data.paths import child_path
from masra.data.prior_file import prior_path, write_prior_file
from masra.lab.demo.events import NO_CAPTION, NoiseRates, PriorPlan, Timeline, plan_priors, plan_timeline
from masra.errors import MasraError

# Bump whenever the generated files would change for the same seed and spec (invalidates caches).
GENERATOR_VERSION = 1
MANIFEST = "manifest.json"
SPLITS = ("train", "val")
_SPLIT_CODE = {"train": 0, "val": 1}
log = logging.getLogger(__name__)


# Texts per encoder batch (batch composition changes the last bits of the embeddings, so it is fixed).
ENCODER_BATCH = 128


class SentenceEncoder(Protocol):
    """What the generator needs of a text encoder (``masra.priors.text_encoders.SentenceTransformerEncoder``)."""

    name: str

    def encode(self, texts: list[str], *, batch_size: int = 64) -> np.ndarray: ...

    def tokens(self, texts: list[str], *, batch_size: int = 64) -> list[np.ndarray]: ...


@dataclass(frozen=True)
class TimelineSpec(ABC):
    """A data regime. What every regime shares: how a video's events, its distractors and its noisy priors are
    laid out (these fields); what each regime defines: how sentence content becomes clip features."""

    regime: ClassVar[str]  # the name ``masra demo --data`` knows it by

    relevant_min_strength: float = 0.3  # signal gain of a relevant clip rated 0 (1.0 when rated 4)
    background_strength: tuple[float, float] = (0.3, 1.0)
    event_clips: tuple[int, int] = (3, 15)  # length range of background events, in clips
    confuser_rate: float = 0.3  # background events drawn from the query's nearest neighbours
    confuser_neighbours: int = 10
    clip_length: float = 2.0
    caption_variants: int = 2  # paraphrases per sentence that captions and descriptions pick from
    word_dropout: float = 0.25  # how paraphrases are made: each word dropped with this probability
    priors: NoiseRates = field(default_factory=NoiseRates)

    @abstractmethod
    def sources(self) -> dict[str, int]:
        """Video feature folders (under ``video/``; "" = ``video/`` itself) and their widths, in loader order."""

    @abstractmethod
    def signals(self, embeddings: np.ndarray, seed: int) -> np.ndarray:
        """[n, k] per-sentence content from [n, 384] sentence embeddings (the regime's hidden map)."""

    @abstractmethod
    def features(self, timeline: Timeline, signals: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """One video's clip features per source, [L, width] each, in the dtype they are stored in."""


@dataclass(frozen=True)
class SyntheticSpec(TimelineSpec):
    """The planted regime. The defaults are calibrated so the baseline is far from perfect."""

    regime: ClassVar[str] = "planted"
    video_dim: int = 128  # total video feature dimension (before the loader's TEF)
    signal_dim: int = 96  # dimensions carrying the event signal; the rest carry only noise
    map_gain: float = 0.5  # pre-activation scale of the random tanh map (higher = more nonlinear)
    noise: float = 1.0  # norm of the per-clip noise relative to a unit-norm, full-strength event signal
    noise_correlation: float = 0.5  # AR(1) coefficient of the noise along time
    scene: float = 0.7  # norm of the per-video nuisance vector shared by all its clips

    def sources(self) -> dict[str, int]:
        return {"": self.video_dim}  # one folder, ``video/`` itself

    def signals(self, embeddings: np.ndarray, seed: int) -> np.ndarray:
        return signal_map(embeddings, seed, self)

    def features(self, timeline: Timeline, signals: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"": video_features(timeline, signals, rng, self)}


@dataclass(frozen=True)
class SyntheticDataset:
    root: Path
    train_path: Path
    val_path: Path
    video_dir: Path
    text_dir: Path
    prior_dir: Path
    manifest: dict[str, Any]

    @classmethod
    def at(cls, root: Path, manifest: dict[str, Any]) -> SyntheticDataset:
        return cls(root, root / "train.jsonl", root / "val.jsonl", root / "video", root / "text", root / "priors", manifest)

    @property
    def video_dirs(self) -> list[Path]:
        """The video feature folders in the loader's order (one for the planted regime, two for the hard one)."""
        return [self.video_dir / name for name in self.manifest.get("video_sources", [""])]


def shipped_rows(split: str) -> list[dict[str, Any]]:
    """The real QVHighlights rows shipped with the package (``train`` 1,200 or ``val`` 400)."""
    if split not in SPLITS:
        raise MasraError(f"unknown split {split!r}; one of {', '.join(SPLITS)}", field="split")
    resource = files("masra") / "assets" / "qvhighlights" / f"demo_{split}.jsonl"
    with tempfile.TemporaryDirectory() as tmp:  # read_jsonl wants a path; resources may live in a zip
        path = Path(tmp) / f"demo_{split}.jsonl"
        path.write_bytes(resource.read_bytes())
        return read_jsonl(path)


def sentence_from_tokens(token_states: list[np.ndarray]) -> np.ndarray:
    """[n, 384] sentence embeddings from token states: MiniLM's own pooling (mean, then L2 norm), one pass fewer."""
    pooled = np.stack([t.mean(axis=0) for t in token_states]).astype(np.float32)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True).clip(min=1e-12)


def paraphrase(sentence: str, rng: np.random.Generator, word_dropout: float) -> str:
    """A cheap paraphrase: drop each word with probability ``word_dropout``, keeping at least 3 words."""
    words = sentence.split()
    keep = rng.random(len(words)) >= word_dropout
    if keep.sum() < min(3, len(words)):
        return sentence
    return " ".join(w for w, k in zip(words, keep) if k)


def signal_map(embeddings: np.ndarray, seed: int, spec: SyntheticSpec) -> np.ndarray:
    """The fixed random nonlinear map f: [n, 384] sentence embeddings -> [n, signal_dim] unit vectors."""
    weights = np.random.default_rng([seed, 7919]).standard_normal((embeddings.shape[1], spec.signal_dim))
    out = np.tanh(spec.map_gain * embeddings.astype(np.float64) @ weights)
    return out / np.linalg.norm(out, axis=1, keepdims=True).clip(min=1e-12)


def background_candidates(
    query_index: int, neighbours: np.ndarray, pool_size: int, rng: np.random.Generator, spec: TimelineSpec, count: int = 40
) -> np.ndarray:
    """Sentences for a video's background events: random other queries, a fraction of them confusers."""
    random_pick = rng.integers(pool_size - 1, size=count)
    random_pick = random_pick + (random_pick >= query_index)
    confuse = rng.random(count) < spec.confuser_rate
    near = neighbours[query_index, rng.integers(neighbours.shape[1], size=count)]
    return np.where(confuse, near, random_pick)


def nearest_neighbours(embeddings: np.ndarray, k: int) -> np.ndarray:
    """[n, k] indices of each row's most similar other rows (cosine)."""
    sim = embeddings @ embeddings.T
    np.fill_diagonal(sim, -np.inf)
    k = max(1, min(k, len(embeddings) - 1))
    return np.argsort(-sim, axis=1, kind="stable")[:, :k]


def correlated_noise(n: int, dim: int, rho: float, rng: np.random.Generator) -> np.ndarray:
    """[n, dim] AR(1) noise along time with coefficient ``rho``; each row has expected norm 1."""
    eps = rng.standard_normal((n, dim)) / np.sqrt(dim)
    noise = np.empty_like(eps)
    noise[0] = eps[0]
    for i in range(1, n):
        noise[i] = rho * noise[i - 1] + np.sqrt(1.0 - rho**2) * eps[i]
    return noise


def scene_vector(dim: int, norm: float, rng: np.random.Generator) -> np.ndarray:
    """[dim] a per-video nuisance vector of the given norm, shared by all its clips."""
    scene = rng.standard_normal(dim)
    return scene * (norm / np.linalg.norm(scene))


def clip_content(timeline: Timeline, event_signals: np.ndarray) -> np.ndarray:
    """[L, k] each clip's event content scaled by its strength (``event_signals``: [pool, k])."""
    sentences = np.array([timeline.events[k].sentence for k in timeline.clip_event])
    return timeline.strength[:, None] * event_signals[sentences]


def video_features(
    timeline: Timeline, event_signals: np.ndarray, rng: np.random.Generator, spec: SyntheticSpec
) -> np.ndarray:
    """[L, video_dim] float32 clip features of one video (``event_signals``: [pool, signal_dim])."""
    n, dim = timeline.n_clips, spec.video_dim
    signal = np.zeros((n, dim))
    signal[:, : spec.signal_dim] = clip_content(timeline, event_signals)
    noise = correlated_noise(n, dim, spec.noise_correlation, rng)
    scene = scene_vector(dim, spec.scene, rng)
    return (signal + spec.noise * noise + scene).astype(np.float32)


def prior_arrays(plan: PriorPlan, variant_emb: np.ndarray) -> dict[str, np.ndarray]:
    """The prior file's arrays as ``write_prior_file``'s keywords (``variant_emb``: [pool, variants, 384]
    L2-normalised paraphrase embeddings)."""
    valid = plan.caption_sentence != NO_CAPTION
    captions = np.zeros((len(valid), variant_emb.shape[2]), dtype=np.float32)
    captions[valid] = variant_emb[plan.caption_sentence[valid], plan.caption_variant[valid]]
    return {
        "caption_emb": captions,
        "caption_valid": valid,
        "event_emb": variant_emb[plan.event_sentence, plan.event_variant].astype(np.float32).reshape(-1, variant_emb.shape[2]),
        "event_spans": plan.event_spans.astype(np.float32),
    }


def paraphrase_embeddings(
    queries: list[str], encoder: SentenceEncoder, seed: int, code: int, spec: TimelineSpec
) -> np.ndarray:
    """[P, variants, 384] L2-normalised embeddings of each query's word-dropout paraphrases (the priors' texts)."""
    texts = [
        paraphrase(q, np.random.default_rng([seed, code, i, j, 31]), spec.word_dropout)
        for i, q in enumerate(queries)
        for j in range(spec.caption_variants)
    ]
    return encoder.encode(texts, batch_size=ENCODER_BATCH).reshape(len(queries), spec.caption_variants, -1)


def _spec_to_json(spec: TimelineSpec) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(spec)))


def _write_split(
    split: str,
    rows: list[dict[str, Any]],
    root: Path,
    encoder: SentenceEncoder,
    seed: int,
    spec: TimelineSpec,
    stats: dict[str, Any],
) -> None:
    queries = [r["query"] for r in rows]
    code = _SPLIT_CODE[split]
    with_priors = split == "train"  # val videos get no priors, so their paraphrases are never encoded
    paraphrases = len(queries) * spec.caption_variants if with_priors else 0
    log.info("encoding %d %s queries and %d paraphrases with %s", len(queries), split, paraphrases, encoder.name)
    token_states = encoder.tokens(queries, batch_size=ENCODER_BATCH)
    pool_emb = sentence_from_tokens(token_states)  # [P, 384]
    variant_emb = paraphrase_embeddings(queries, encoder, seed, code, spec) if with_priors else None
    signals = spec.signals(pool_emb, seed)
    neighbours = nearest_neighbours(pool_emb, spec.confuser_neighbours)

    wrong = total = 0
    bar = tqdm(rows, desc=f"generating {spec.regime} {split} videos", unit="video", leave=False, dynamic_ncols=True)
    for index, row in enumerate(bar):
        rng = np.random.default_rng([seed, code, index])
        candidates = background_candidates(index, neighbours, len(rows), rng, spec)
        timeline = plan_timeline(
            row,
            index,
            candidates,
            rng,
            clip_length=spec.clip_length,
            event_clips=spec.event_clips,
            relevant_min_strength=spec.relevant_min_strength,
            background_strength=spec.background_strength,
        )
        for source, features in spec.features(timeline, signals, rng).items():
            np.savez(child_path(root / "video" / source, row["vid"], ".npz"), features=features)
        np.savez(
            child_path(root / "text", f"qid{row['qid']}", ".npz"),
            last_hidden_state=token_states[index],
            pooler_output=pool_emb[index],
        )
        if variant_emb is not None:
            plan = plan_priors(
                timeline, float(row["duration"]), len(rows), spec.caption_variants, spec.priors, rng, clip_length=spec.clip_length
            )
            write_prior_file(prior_path(root / "priors", row["vid"]), **prior_arrays(plan, variant_emb))
            truth = np.array([timeline.events[k].sentence for k in timeline.clip_event])
            captioned = plan.caption_sentence != NO_CAPTION
            wrong += int((plan.caption_sentence[captioned] != truth[captioned]).sum())
            total += int(captioned.sum())
    bar.close()
    write_jsonl(root / f"{split}.jsonl", rows)
    stats[split] = {"rows": len(rows), "text_dim": int(pool_emb.shape[1])}
    if variant_emb is not None:
        stats["train"]["wrong_caption_rate"] = round(wrong / max(total, 1), 4)


def build_synthetic_dataset(
    root: str | Path,
    seed: int = 0,
    spec: TimelineSpec | None = None,
    *,
    n_train: int | None = None,
    n_val: int | None = None,
    encoder: SentenceEncoder | None = None,
) -> SyntheticDataset:
    """Generate the dataset into ``root``, or reuse it when its manifest matches (version, seed, spec, sizes).

    ``n_train`` / ``n_val`` take the first rows of the shipped splits (None = all). A folder at ``root``
    that was not made by this generator is never deleted.
    """
    root = Path(root)
    spec = spec or SyntheticSpec()
    rows = {"train": shipped_rows("train")[:n_train], "val": shipped_rows("val")[:n_val]}
    for split, count in (("train", n_train), ("val", n_val)):
        if count is not None and count < 2:  # background events need at least one other sentence
            raise MasraError("at least 2 rows are needed", field=f"n_{split}")
    key = {
        "generator_version": GENERATOR_VERSION,
        "regime": spec.regime,
        "seed": seed,
        "spec": _spec_to_json(spec),
        "rows": {s: len(r) for s, r in rows.items()},
    }
    manifest_path = root / MANIFEST
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if {k: manifest.get(k) for k in key} == key:
            log.info("reusing the synthetic dataset in %s", root)
            return SyntheticDataset.at(root, manifest)
        log.info("synthetic dataset in %s is stale (other version, seed or spec): regenerating", root)
    elif root.exists() and any(root.iterdir()):
        raise MasraError("folder exists and is not a masra synthetic dataset (no manifest.json); refusing to overwrite", file=root)

    if encoder is None:
        from masra.priors.text_encoders import load_text_encoder

        encoder = load_text_encoder("minilm", device="cpu")
    root.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    work.chmod(0o755)  # mkdtemp makes it private; the dataset is ordinary output
    try:
        for sub in ("text", "priors", *(f"video/{source}" for source in spec.sources())):
            (work / sub).mkdir(parents=True, exist_ok=True)
        stats: dict[str, Any] = {}
        for split in SPLITS:
            _write_split(split, rows[split], work, encoder, seed, spec, stats)
        manifest = {
            **key,
            "encoder": encoder.name,
            "video_dim": sum(spec.sources().values()),
            "video_sources": list(spec.sources()),
            "clip_length": spec.clip_length,
            "stats": stats,
        }
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if root.exists():
            shutil.rmtree(root)
        os.replace(work, root)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return SyntheticDataset.at(root, manifest)
