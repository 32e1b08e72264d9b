"""Event timelines and simulated MLLM priors (pure numpy, no encoder)."""

from __future__ import annotations

import numpy as np
import pytest

from masra.lab.demo.events import NO_CAPTION, NoiseRates, plan_priors, plan_timeline

ROW = {
    "duration": 150,
    "relevant_clip_ids": [10, 11, 12, 13, 20, 21],
    "saliency_scores": [[4, 4, 4], [0, 0, 0], [2, 2, 2], [4, 4, 4], [1, 2, 3], [4, 4, 4]],
    "relevant_windows": [[20, 28], [40, 44]],
}
QUERY = 0
POOL = 200


def _timeline(seed: int = 0, row: dict = ROW):
    rng = np.random.default_rng(seed)
    candidates = rng.integers(1, POOL, size=40)
    timeline = plan_timeline(
        row, QUERY, candidates, rng, clip_length=2.0, event_clips=(3, 15),
        relevant_min_strength=0.3, background_strength=(0.3, 1.0),
    )
    return timeline, candidates


def test_timeline_covers_every_clip_once_with_query_events_on_the_windows():
    timeline, candidates = _timeline()
    assert timeline.n_clips == 75
    covered = np.zeros(timeline.n_clips, dtype=int)
    for event in timeline.events:
        covered[event.start_clip : event.end_clip] += 1
    assert (covered == 1).all()
    query_clips = {c for e in timeline.events if e.sentence == QUERY for c in range(e.start_clip, e.end_clip)}
    assert query_clips == set(ROW["relevant_clip_ids"])
    assert [(e.start_clip, e.end_clip) for e in timeline.events if e.sentence == QUERY] == [(10, 14), (20, 22)]
    background = [e for e in timeline.events if e.sentence != QUERY]
    assert all(e.sentence in set(candidates.tolist()) for e in background)
    # background runs are cut into events of 3..15 clips (a run shorter than 3 stays whole)
    assert all(3 <= e.n_clips <= 15 for e in background if e.n_clips != 6)


def test_relevant_signal_gain_follows_real_saliency():
    timeline, _ = _timeline()
    gains = {clip: timeline.strength[clip] for clip in ROW["relevant_clip_ids"]}
    assert gains[10] == pytest.approx(1.0)  # rated 4 by all annotators
    assert gains[11] == pytest.approx(0.3)  # rated 0: the faint minimum
    assert gains[12] == pytest.approx(0.3 + 0.7 * 0.5)
    assert timeline.relevant.sum() == len(ROW["relevant_clip_ids"])


def test_without_noise_the_priors_are_the_truth():
    timeline, _ = _timeline()
    rates = NoiseRates(wrong_caption=0, missing_caption=0, wrong_event=0, merge=0, split=0, span_shift_s=0)
    plan = plan_priors(timeline, 150.0, POOL, 2, rates, np.random.default_rng(1), clip_length=2.0)
    truth = np.array([timeline.events[k].sentence for k in timeline.clip_event])
    np.testing.assert_array_equal(plan.caption_sentence, truth)
    expected_spans = [[e.start_clip * 2.0, e.end_clip * 2.0] for e in timeline.events]
    np.testing.assert_array_equal(plan.event_spans, np.array(expected_spans, dtype=np.float32))
    np.testing.assert_array_equal(plan.event_sentence, [e.sentence for e in timeline.events])


def test_noise_rates_are_realised_as_configured():
    rates = NoiseRates(wrong_caption=0.2, missing_caption=0.1, wrong_event=0.25, merge=0.0, split=0.0, span_shift_s=3.0)
    wrong = missing = clips = wrong_events = events = 0
    shifts = []
    for seed in range(60):
        timeline, _ = _timeline(seed)
        plan = plan_priors(timeline, 150.0, POOL, 2, rates, np.random.default_rng(seed + 1000), clip_length=2.0)
        truth = np.array([timeline.events[k].sentence for k in timeline.clip_event])
        has = plan.caption_sentence != NO_CAPTION
        missing += int((~has).sum())
        wrong += int((plan.caption_sentence[has] != truth[has]).sum())
        clips += timeline.n_clips
        wrong_events += int((plan.event_sentence != [e.sentence for e in timeline.events]).sum())
        events += len(timeline.events)
        true_starts = np.array([e.start_clip * 2.0 for e in timeline.events])
        shifts.append(plan.event_spans[1:-1, 0] - true_starts[1:-1])  # inner starts: no clamping at 0
    assert missing / clips == pytest.approx(0.1, abs=0.02)
    # captions are dropped after being corrupted, so the wrong rate holds among the captions that remain
    assert wrong / (clips - missing) == pytest.approx(0.2, abs=0.025)
    assert wrong_events / events == pytest.approx(0.25, abs=0.05)
    assert np.concatenate(shifts).std() == pytest.approx(3.0, abs=0.4)


def test_merges_and_splits_change_the_event_list():
    timeline, _ = _timeline()
    merged = plan_priors(timeline, 150.0, POOL, 2, NoiseRates(merge=1.0, split=0.0, span_shift_s=0), np.random.default_rng(0), clip_length=2.0)
    assert len(merged.event_sentence) == 1  # everything merged into the first event
    np.testing.assert_array_equal(merged.event_spans, [[0.0, 150.0]])
    split = plan_priors(timeline, 150.0, POOL, 2, NoiseRates(merge=0.0, split=1.0, span_shift_s=0, wrong_event=0), np.random.default_rng(0), clip_length=2.0)
    splittable = sum(1 for e in timeline.events if e.n_clips >= 4)
    assert len(split.event_sentence) == len(timeline.events) + splittable
    assert (split.event_spans[:, 1] > split.event_spans[:, 0]).all()


def test_spans_stay_inside_the_video():
    timeline, _ = _timeline()
    plan = plan_priors(timeline, 150.0, POOL, 2, NoiseRates(span_shift_s=20.0), np.random.default_rng(3), clip_length=2.0)
    assert (plan.event_spans >= 0).all() and (plan.event_spans <= 150).all()
    assert (plan.event_spans[:, 1] > plan.event_spans[:, 0]).all()
