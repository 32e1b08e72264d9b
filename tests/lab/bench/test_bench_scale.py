"""``masra bench scale``: one row per (length, variant, window), each length reported as soon as it is measured."""

from __future__ import annotations

import torch

import masra.lab.bench.scale as scale
from masra.lab.bench.measure import Measurement


def test_scale_measures_every_length_variant_and_window_and_reports_each_length_as_it_goes(monkeypatch, capsys):
    calls = []

    def fake_bench_steps(specs, jobs, repeats):  # the step itself is measured in tests/lab/bench/test_bench_model.py
        calls.append([(s.clips, s.variant, s.encoder_window, s.batch_size) for s in specs])
        progress = capsys.readouterr().err  # what was shown before this length was measured
        assert all(f"{c} clips" in progress for c in (6, 12)[: len(calls) - 1])
        return {}, {s: {"train_step": Measurement(0.5 * s.clips, 2**30 * s.clips)} for s in specs}

    monkeypatch.setattr(scale, "bench_steps", fake_bench_steps)
    rows = scale.bench_scale([6, 12], batch_size=2, window=3, device=torch.device("cpu"))
    assert calls == [[(c, v, w, 2) for v in ("baseline", "masra") for w in (0, 3)] for c in (6, 12)]
    assert [(r.clips, r.variant, r.encoder_window, r.train_step.seconds) for r in rows] == [
        (c, v, w, 0.5 * c) for c in (6, 12) for v in ("baseline", "masra") for w in (0, 3)
    ]
    shown = capsys.readouterr().err
    assert "12 clips, masra, window 3: step 6.00 s, peak 12.00 GiB" in shown
    assert "12 clips, baseline, full attention" in shown and "bench scale" in shown
