"""``alternating_timings_in_workers``: each key's jobs run in a process of their own, rounds alternate."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

from masra.lab.bench.measure import alternating_timings_in_workers


def sleeping_jobs(key: float) -> tuple[int, dict]:
    """(this process's id, a job that sleeps ``key`` seconds and one that burns CPU)."""

    def burn() -> None:
        deadline = time.process_time() + key
        while time.process_time() < deadline:
            pass

    return os.getpid(), {"sleep": lambda: time.sleep(key), "burn": burn}


def holding_jobs(megabytes: int) -> tuple[int, dict]:
    """A job that touches ``megabytes`` of memory outside torch's allocator, and one that does nothing."""

    def hold() -> None:
        block = np.ones(megabytes * 2**20, dtype=np.uint8)
        assert block.sum() == megabytes * 2**20

    return os.getpid(), {"hold": hold, "idle": lambda: None}


def dying_jobs(key: str) -> tuple[int, dict]:
    return os.getpid(), {"die": lambda: os._exit(3)}


def test_each_key_runs_in_its_own_process_and_is_timed_by_itself():
    keys = [0.05, 0.1]
    pids, timings = alternating_timings_in_workers(sleeping_jobs, keys, ("sleep", "burn"), torch.device("cpu"),
                                                   repeats=3)
    assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()
    for key in keys:
        assert timings["sleep"][key].seconds >= key  # (a loaded machine may wake the worker late: no upper bound)
        assert timings["sleep"][key].user_seconds < key / 2  # sleeping costs no CPU time of the worker
        cpu = timings["burn"][key].user_seconds + timings["burn"][key].system_seconds
        assert cpu >= key - 0.02  # os.times counts in 10-ms ticks


def test_each_jobs_peak_is_its_own_processs_since_the_jobs_first_run():
    _, timings = alternating_timings_in_workers(holding_jobs, [200], ("hold", "idle"), torch.device("cpu"),
                                                repeats=1, warmup=0)
    held, idle = timings["hold"][200].peak_bytes, timings["idle"][200].peak_bytes
    assert held >= 200 * 2**20
    assert idle < held - 150 * 2**20  # reset before the job: the earlier job's peak does not count


def test_peaks_count_memory_outside_torch_and_each_process_starts_from_its_own_size():
    _, timings = alternating_timings_in_workers(holding_jobs, [400, 10], ("hold",), torch.device("cpu"), repeats=1)
    big, small = timings["hold"][400].peak_bytes, timings["hold"][10].peak_bytes
    assert big >= 400 * 2**20
    assert small < big - 300 * 2**20  # not inherited from the parent or from the other worker


def test_a_worker_that_dies_is_an_error_not_a_hang():
    with pytest.raises(RuntimeError, match="worker process died"):
        alternating_timings_in_workers(dying_jobs, ["a"], ("die",), torch.device("cpu"), repeats=1)
