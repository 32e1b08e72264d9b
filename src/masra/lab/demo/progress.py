"""Per-epoch progress of the models the demo trains (side by side in worker processes, or in this one):
one line per finished epoch with the loss, the last validation metrics and an ETA."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from masra.train.trainer import EpochReport

SHOWN_METRICS = {"MR-full-mAP": "val MR-mAP", "HL-min-VeryGood-mAP": "HL-mAP"}


@dataclass
class VariantProgress:
    """What one trained model has reported so far."""

    name: str
    started: float
    last_metrics: dict[str, Any] | None = None


def format_epoch(name: str, report: EpochReport, elapsed: float, last_metrics: dict[str, Any] | None) -> str:
    """``masra     epoch 3/8  loss 4.1234  val MR-mAP 12.34 HL-mAP 30.12  elapsed 1m05s  ETA 2m10s``."""
    remaining = elapsed / report.epoch * (report.epochs - report.epoch)
    metrics = "  ".join(
        f"{label} {last_metrics[key]:.2f}" for key, label in SHOWN_METRICS.items() if last_metrics and key in last_metrics
    ) or "val not yet evaluated"
    return (f"{name:<9} epoch {report.epoch}/{report.epochs}  loss {report.loss:.4f}  {metrics}  "
            f"elapsed {_clock(elapsed)}  ETA {_clock(remaining)}")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s"


class ProgressPrinter:
    """Turns (variant name, EpochReport) events into printed lines, remembering each model's last metrics."""

    def __init__(self, emit: Callable[[str], None] = partial(print, flush=True)) -> None:
        self.emit = emit
        self.variants: dict[str, VariantProgress] = {}

    def __call__(self, name: str, report: EpochReport) -> None:
        state = self.variants.setdefault(name, VariantProgress(name, time.time() - report.seconds))
        if report.metrics is not None:
            state.last_metrics = report.metrics
        self.emit(format_epoch(name, report, time.time() - state.started, state.last_metrics))


class QueueListener:
    """Reads (name, EpochReport) events that worker processes put on ``events`` and hands them to
    ``printer`` from a background thread, until stopped."""

    def __init__(self, events: Any, printer: ProgressPrinter) -> None:
        self.events = events
        self.printer = printer
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> QueueListener:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._drain()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.printer(*self.events.get(timeout=0.2))
            except queue.Empty:
                continue

    def _drain(self) -> None:
        while True:
            try:
                self.printer(*self.events.get_nowait())
            except queue.Empty:
                return
