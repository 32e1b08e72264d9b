"""Event timelines of synthetic videos and the noisy "MLLM" priors derived from them (pure numpy).

A video is a sequence of events. The clips inside the query's ground-truth windows form the query event
(one segment per window); the clips in between are cut into background events, each carrying another real
sentence. Priors are what an imperfect MLLM would report about that timeline: a caption per clip (a
paraphrase of the clip's event, sometimes wrong or missing) and event descriptions whose spans are shifted,
merged or split against the truth. Neither knows which event the query asks for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NO_CAPTION = -1


@dataclass(frozen=True)
class Event:
    sentence: int  # index into the split's sentence pool
    start_clip: int
    end_clip: int  # exclusive

    @property
    def n_clips(self) -> int:
        return self.end_clip - self.start_clip


@dataclass(frozen=True)
class Timeline:
    n_clips: int
    events: list[Event]  # in temporal order, covering every clip exactly once
    clip_event: np.ndarray  # [L] int, index into ``events``
    relevant: np.ndarray  # [L] bool, inside a ground-truth window
    strength: np.ndarray  # [L] float, gain of the event signal in the clip features


@dataclass(frozen=True)
class NoiseRates:
    """How wrong the simulated MLLM is (fractions in [0, 1], span noise in seconds)."""

    wrong_caption: float = 0.15
    missing_caption: float = 0.05
    wrong_event: float = 0.10
    merge: float = 0.15
    split: float = 0.15
    span_shift_s: float = 2.0


@dataclass(frozen=True)
class PriorPlan:
    caption_sentence: np.ndarray  # [L] int, pool index of each clip's caption, NO_CAPTION when missing
    caption_variant: np.ndarray  # [L] int, which paraphrase of that sentence
    event_sentence: np.ndarray  # [M] int
    event_variant: np.ndarray  # [M] int
    event_spans: np.ndarray  # [M, 2] float seconds


def _runs(mask: np.ndarray) -> list[tuple[int, int, bool]]:
    """Maximal runs of equal values: (start, end exclusive, value)."""
    runs: list[tuple[int, int, bool]] = []
    start = 0
    for i in range(1, len(mask) + 1):
        if i == len(mask) or mask[i] != mask[start]:
            runs.append((start, i, bool(mask[start])))
            start = i
    return runs


def plan_timeline(
    row: dict,
    query_sentence: int,
    background_sentences: np.ndarray,
    rng: np.random.Generator,
    *,
    clip_length: float,
    event_clips: tuple[int, int],
    relevant_min_strength: float,
    background_strength: tuple[float, float],
) -> Timeline:
    """Lay out the events of one annotated video.

    Background events take their sentences from ``background_sentences`` in order (cycling if the video
    has more background events than candidates). A relevant clip's signal
    gain grows with its real saliency (mean of the 3 annotators, 0..4): a "Very Bad" clip inside a window
    carries a faint trace of the query event, a "Very Good" one the full signal.
    """
    n_clips = max(1, int(row["duration"] / clip_length))
    relevant = np.zeros(n_clips, dtype=bool)
    saliency = np.zeros(n_clips, dtype=np.float64)
    for clip_id, scores in zip(row["relevant_clip_ids"], row["saliency_scores"]):
        if clip_id < n_clips:
            relevant[clip_id] = True
            saliency[clip_id] = float(np.mean(scores)) / 4.0

    next_bg = 0
    events: list[Event] = []
    strength = np.empty(n_clips, dtype=np.float64)
    lo, hi = event_clips
    for start, end, is_relevant in _runs(relevant):
        if is_relevant:
            events.append(Event(query_sentence, start, end))
            strength[start:end] = relevant_min_strength + (1.0 - relevant_min_strength) * saliency[start:end]
            continue
        pos = start
        while pos < end:
            length = int(rng.integers(lo, hi + 1))
            if end - (pos + length) < lo:  # no tail shorter than an event
                length = end - pos
            sentence = int(background_sentences[next_bg % len(background_sentences)])
            next_bg += 1
            events.append(Event(sentence, pos, pos + length))
            strength[pos : pos + length] = rng.uniform(*background_strength)
            pos += length
    clip_event = np.empty(n_clips, dtype=np.int64)
    for k, event in enumerate(events):
        clip_event[event.start_clip : event.end_clip] = k
    return Timeline(n_clips, events, clip_event, relevant, strength)


def _other_sentence(rng: np.random.Generator, pool_size: int, avoid: int) -> int:
    pick = int(rng.integers(pool_size - 1))
    return pick + 1 if pick >= avoid else pick


def plan_priors(
    timeline: Timeline,
    duration: float,
    pool_size: int,
    n_variants: int,
    rates: NoiseRates,
    rng: np.random.Generator,
    *,
    clip_length: float,
) -> PriorPlan:
    """Simulate the MLLM's clip captions and event list for one video."""
    n = timeline.n_clips
    true_sentence = np.array([timeline.events[k].sentence for k in timeline.clip_event], dtype=np.int64)
    caption_sentence = true_sentence.copy()
    wrong = rng.random(n) < rates.wrong_caption
    for i in np.flatnonzero(wrong):
        caption_sentence[i] = _other_sentence(rng, pool_size, int(true_sentence[i]))
    caption_sentence[rng.random(n) < rates.missing_caption] = NO_CAPTION
    caption_variant = rng.integers(n_variants, size=n)

    # Events as the MLLM sees them: neighbours merged, long events split, then every boundary jittered.
    spans: list[list[float]] = []
    sentences: list[int] = []
    for event in timeline.events:
        start, end = event.start_clip * clip_length, min(event.end_clip * clip_length, duration)
        if spans and rng.random() < rates.merge:
            spans[-1][1] = end  # merged with the previous event, which keeps its description
            continue
        if event.n_clips >= 4 and rng.random() < rates.split:
            cut = (event.start_clip + int(rng.integers(2, event.n_clips - 1))) * clip_length
            spans += [[start, cut], [cut, end]]
            sentences += [event.sentence, event.sentence]
        else:
            spans.append([start, end])
            sentences.append(event.sentence)
    event_sentence = np.array(sentences, dtype=np.int64)
    for k in np.flatnonzero(rng.random(len(sentences)) < rates.wrong_event):
        event_sentence[k] = _other_sentence(rng, pool_size, int(event_sentence[k]))
    span_arr = np.array(spans, dtype=np.float64).reshape(-1, 2)
    span_arr = np.round(span_arr + rng.normal(0.0, rates.span_shift_s, size=span_arr.shape))
    span_arr = np.clip(span_arr, 0.0, duration)
    span_arr[:, 1] = np.maximum(span_arr[:, 1], np.minimum(span_arr[:, 0] + clip_length, duration))
    span_arr[:, 0] = np.minimum(span_arr[:, 0], span_arr[:, 1] - clip_length).clip(min=0.0)
    return PriorPlan(
        caption_sentence=caption_sentence,
        caption_variant=caption_variant,
        event_sentence=event_sentence,
        event_variant=rng.integers(n_variants, size=len(sentences)),
        event_spans=span_arr.astype(np.float32),
    )
