"""The moments table of ``masra predict --video`` lists each window once, as the web page does."""

import numpy as np

from masra.video.predict import VideoPrediction
from masra.video.report import distinct_windows, moments_table


def test_the_table_shows_a_repeated_window_once_at_its_best_score():
    windows = [(2.0, 6.0, 0.9), (2.0, 6.0, 0.8), (10.0, 14.0, 0.7), (2.0, 6.0, 0.5), (20.0, 22.0, 0.4)]
    pred = VideoPrediction("a dog runs", "clip", 30.0, 2.0, windows, np.zeros(15, np.float32))
    rows = moments_table(pred, top_k=3).splitlines()[2:]
    assert [row.split()[1:] for row in rows] == [
        ["0:02.0", "0:06.0", "0.900"], ["0:10.0", "0:14.0", "0.700"], ["0:20.0", "0:22.0", "0.400"]
    ]
    assert distinct_windows(windows) == [(2.0, 6.0, 0.9), (10.0, 14.0, 0.7), (20.0, 22.0, 0.4)]
