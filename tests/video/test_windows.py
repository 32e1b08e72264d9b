"""Sliding windows over videos longer than the trained length: coverage, saliency average, moment merge."""

from __future__ import annotations

import numpy as np
import pytest

from masra.errors import MasraError
from masra.video.windows import average_saliency, merge_moments, window_starts


@pytest.mark.parametrize("n_clips,window", [(40, 8), (75, 75), (76, 75), (300, 75), (9, 8), (1, 75), (17, 4)])
def test_windows_cover_every_clip_with_the_trained_length(n_clips, window):
    starts = window_starts(n_clips, window)
    covered = np.zeros(n_clips, int)
    for start in starts:
        assert 0 <= start and start + min(window, n_clips) <= n_clips
        covered[start : start + window] += 1
    assert covered.min() >= 1 and starts == sorted(set(starts))
    if n_clips > window:
        assert starts[-1] == n_clips - window and all(b - a <= window - window // 2 for a, b in zip(starts, starts[1:]))
    else:
        assert starts == [0]


def test_saliency_is_the_mean_of_the_covering_windows():
    saliency = average_saliency(6, [0, 2, 3], [np.array([1.0, 1, 1]), np.array([4.0, 4, 4]), np.array([7.0, 7, 7])])
    np.testing.assert_allclose(saliency, [1, 1, (1 + 4) / 2, (4 + 7) / 2, (4 + 7) / 2, 7])
    with pytest.raises(MasraError, match="covered by no window"):
        average_saliency(5, [0], [np.ones(3)])


def test_moments_are_shifted_clipped_and_duplicates_from_overlaps_merged():
    first = [[10.0, 20.0, 0.9], [0.0, 4.0, 0.5]]  # window at 0 s
    second = [[2.0, 12.0, 0.8], [20.0, 30.0, 0.7]]  # window at 8 s: 10-20 s again, and 28-38 s (> 35 s end)
    merged = merge_moments([first, second], [0.0, 8.0], duration=35.0, clip_length=2.0, top_k=10)
    assert merged == [(10.0, 20.0, 0.9), (28.0, 35.0, 0.7), (0.0, 4.0, 0.5)]
    single = merge_moments([first], [0.0], duration=35.0, clip_length=2.0, top_k=1)
    assert single == [(10.0, 20.0, 0.9)]


def test_a_moment_rounded_to_zero_length_is_widened_to_its_clip():
    rows = [[0.0, 0.0, 0.9], [4.0, 4.0, 0.5], [36.0, 36.0, 0.2]]  # a 0.8-s video; two clips of a 35-s one
    assert merge_moments([rows[:1]], [0.0], duration=0.8, clip_length=2.0) == [(0.0, 0.8, 0.9)]
    widened = merge_moments([rows[1:]], [0.0], duration=35.0, clip_length=2.0)
    assert widened == [(4.0, 6.0, 0.5), (34.0, 35.0, 0.2)]
