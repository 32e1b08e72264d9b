"""Timing and peak-memory measurement shared by the benchmarks."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class Measurement:
    seconds: float  # median wall time of one call
    peak_bytes: int | None  # peak memory allocated during one call (None where it cannot be measured)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_bytes(fn: Callable[[], object], device: torch.device) -> int | None:
    """Peak bytes allocated while ``fn`` runs: the CUDA allocator's counter on GPU; on CPU, the largest
    amount of memory held by live tensors, from the profiler's allocation events."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        _sync(device)
        return torch.cuda.max_memory_allocated(device) - base
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # Replay allocations (attributed to the op that made them, net of what it freed itself) and frees
    # ("[memory]" events) in time order, keeping the running maximum of live bytes.
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    live = peak = 0
    for event in events:
        live += event.cpu_memory_usage if event.name == "[memory]" else event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak


def measure(
    fn: Callable[[], object], device: torch.device, *, repeats: int = 5, warmup: int = 1, memory: bool = True
) -> Measurement:
    """Median wall time over ``repeats`` calls after ``warmup`` calls, then (``memory``) one call for the
    peak of torch memory; numpy-only work has no torch allocations to count, so it passes memory=False."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return Measurement(statistics.median(times), peak_memory_bytes(fn, device) if memory else None)
