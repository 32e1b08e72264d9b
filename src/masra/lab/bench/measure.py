"""Timing and peak-memory measurement shared by the benchmarks."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import multiprocessing
import os
import re
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm


@dataclass
class Measurement:
    seconds: float  # median wall time of one call
    peak_bytes: int | None  # peak memory allocated during one call (None where it cannot be measured)
    user_seconds: float | None = None  # median CPU time of one call in user mode, all threads (None: not timed)
    system_seconds: float | None = None  # the same in the kernel (page faults, memory mapping, ...)


@dataclass
class Timing:
    seconds: float  # median wall time of one call
    user_seconds: float  # median CPU time of the whole process (all threads) in user mode during one call
    system_seconds: float  # the same in the kernel: large values mean page faults (memory mapped and zeroed)


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


def _timed_call(fn: Callable[[], object], device: torch.device) -> tuple[float, float, float]:
    """(wall, user, system) seconds of one call of ``fn``; CPU times are this process's (os.times)."""
    cpu, start = os.times(), time.perf_counter()
    fn()
    _sync(device)
    wall, cpu_end = time.perf_counter() - start, os.times()
    return wall, cpu_end.user - cpu.user, cpu_end.system - cpu.system


def _alternating_rounds(
    runners: dict[Any, Callable[[], tuple[float, float, float]]], repeats: int, warmup: int
) -> dict[Any, Timing]:
    """Median (wall, user, system) of each runner over ``repeats`` rounds (a, b, c, a, b, c, ...) after ``warmup``
    untimed rounds; a runner times one call and returns its three durations."""
    for _ in range(warmup):
        for runner in runners.values():
            runner()
    samples: dict[Any, list[tuple[float, float, float]]] = {key: [] for key in runners}
    for _ in range(repeats):
        for key, runner in runners.items():
            samples[key].append(runner())
    return {
        key: Timing(*(statistics.median(column) for column in zip(*values, strict=True)))
        for key, values in samples.items()
    }


def alternating_timings(
    fns: dict[str, Callable[[], object]], device: torch.device, *, repeats: int = 5, warmup: int = 1
) -> dict[str, Timing]:
    """Median wall, user and system time of each function, timed in alternating rounds (a, b, c, a, b, c, ...),
    so that a load change on the machine hits every function alike and the ratios between them stay meaningful.
    User and system times are the process's own (os.times), so other processes' load does not count in them."""
    runners = {name: (lambda fn=fn: _timed_call(fn, device)) for name, fn in fns.items()}
    return _alternating_rounds(runners, repeats, warmup)


JobFactory = Callable[[Any], tuple[Any, dict[str, Callable[[], object]]]]


@dataclass
class WorkerTiming(Timing):
    peak_bytes: int = 0  # the process's peak over the job's runs (process_peak_bytes, reset before its first)


def _timing_worker(conn: Any, factory: JobFactory, key: Any, device: str) -> None:
    """Build ``factory(key)`` = (info, {job: fn}) and send info; then serve requests until sent None:
    ("reset", _) starts a new peak, ("run", job) runs one job and sends its (wall, user, system) seconds,
    ("peak", _) sends the peak since the reset."""
    info, fns = factory(key)
    conn.send(info)
    device_ = torch.device(device)
    while (request := conn.recv()) is not None:
        action, job = request
        if action == "reset":
            reset_process_peak(device_)
            conn.send(None)
        elif action == "peak":
            conn.send(process_peak_bytes(device_))
        else:
            conn.send(_timed_call(fns[job], device_))
    conn.close()


def alternating_timings_in_workers(
    factory: JobFactory, keys: list[Any], jobs: tuple[str, ...], device: torch.device, *, repeats: int = 5,
    warmup: int = 1,
) -> tuple[dict[Any, Any], dict[str, dict[Any, WorkerTiming]]]:
    """:func:`alternating_timings` with each key's functions in a process of its own (spawned; ``factory`` and
    the keys must pickle): ``factory(key)`` builds (info, {job: fn}) there. Rounds still alternate the keys
    (one process runs at a time, the others wait), so a load change hits every key alike, and no key's
    memory shares a heap with another's: in one process, the allocator's state after one model's step (its
    freed blocks, its trimmed heap) changes what the next model's step pays for fresh memory. Each process
    also gives each job's whole-process peak (reset before the job's first run, ``warmup`` runs included), jobs
    in the given order. A bar on stderr counts the runs (a long-video step runs for minutes). Returns ({key: info}, {job: {key: WorkerTiming}})."""
    context = multiprocessing.get_context("spawn")
    workers = []

    def ask(parent: Any, action: str, job: str = "") -> Any:
        parent.send((action, job))
        return parent.recv()

    bar = tqdm(total=len(jobs) * (warmup + repeats) * len(keys), desc="bench: building the models", unit="run",
               dynamic_ncols=True, leave=False)

    def run(parent: Any, job: str) -> tuple[float, float, float]:
        timed = ask(parent, "run", job)
        bar.update()
        return timed

    try:
        for key in keys:
            parent, child = context.Pipe()
            process = context.Process(target=_timing_worker, args=(child, factory, key, str(device)), daemon=True)
            process.start()
            child.close()
            workers.append((key, parent, process))
        infos = {key: parent.recv() for key, parent, _ in workers}
        timings: dict[str, dict[Any, WorkerTiming]] = {}
        for job in jobs:
            bar.set_description(f"bench: {job}")
            for _, parent, _ in workers:
                ask(parent, "reset")
            runners = {key: (lambda parent=parent, job=job: run(parent, job)) for key, parent, _ in workers}
            medians = _alternating_rounds(runners, repeats, warmup)
            timings[job] = {
                key: WorkerTiming(**dataclasses.asdict(medians[key]), peak_bytes=ask(parent, "peak"))
                for key, parent, _ in workers
            }
        return infos, timings
    except EOFError:
        raise RuntimeError("a benchmark worker process died (out of memory?)") from None
    finally:
        bar.close()
        for _, parent, process in workers:
            with contextlib.suppress(OSError, BrokenPipeError):
                parent.send(None)
            process.join(timeout=30)
            if process.is_alive():
                process.kill()


def alternating_median_seconds(
    fns: dict[str, Callable[[], object]], device: torch.device, *, repeats: int = 5, warmup: int = 1
) -> dict[str, float]:
    """The median wall times of :func:`alternating_timings`."""
    timings = alternating_timings(fns, device, repeats=repeats, warmup=warmup)
    return {name: timing.seconds for name, timing in timings.items()}


def reset_process_peak(device: torch.device) -> None:
    """Start a new peak: the CUDA allocator's counter, or on Linux the resident-set high-water mark
    (/proc/self/clear_refs); elsewhere the CPU peak keeps counting from the process start."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def process_peak_bytes(device: torch.device) -> int:
    """This process's peak memory since the last reset: resident-set high-water mark on CPU (everything the
    process holds, not only torch tensors; VmHWM on Linux, which, unlike ru_maxrss, does not inherit the
    parent's size across fork + exec); the CUDA allocator's peak on GPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    status = Path("/proc/self/status")
    if status.is_file():
        found = re.search(r"^VmHWM:\s+(\d+) kB", status.read_text(), flags=re.MULTILINE)
        if found:
            return int(found.group(1)) * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere
