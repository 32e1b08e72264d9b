"""The demo's per-epoch progress lines: loss, the last val metrics (kept between evaluations), ETA."""

from masra.lab.demo.progress import ProgressPrinter, format_epoch
from masra.train.trainer import EpochReport


def test_eta_is_the_mean_epoch_time_times_the_epochs_left():
    line = format_epoch("masra", EpochReport(2, 8, 1.23456, None, 30.0), elapsed=60.0, last_metrics=None)
    assert line == "masra     epoch 2/8  loss 1.2346  val not yet evaluated  elapsed 1m00s  ETA 3m00s"


def test_the_last_evaluation_is_shown_until_the_next_one():
    lines: list[str] = []
    printer = ProgressPrinter(emit=lines.append)
    metrics = {"MR-full-mAP": 12.345, "HL-min-VeryGood-mAP": 30.0, "MR-full-R1@0.5": 20.0}
    printer("baseline", EpochReport(1, 4, 2.0, metrics, 10.0))
    printer("masra", EpochReport(1, 4, 3.0, None, 12.0))
    printer("baseline", EpochReport(2, 4, 1.5, None, 10.0))
    assert "val MR-mAP 12.35  HL-mAP 30.00" in lines[0]
    assert "val not yet evaluated" in lines[1]  # another model's metrics are not mixed in
    assert "val MR-mAP 12.35  HL-mAP 30.00" in lines[2] and "epoch 2/4  loss 1.5000" in lines[2]
