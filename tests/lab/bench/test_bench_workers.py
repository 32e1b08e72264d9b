"""``alternating_timings_in_workers``: each key's jobs run in a process of their own, rounds alternate."""

from __future__ import annotations

import os
import time

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


def dying_jobs(key: str) -> tuple[int, dict]:
    return os.getpid(), {"die": lambda: os._exit(3)}


def test_each_key_runs_in_its_own_process_and_is_timed_by_itself():
    keys = [0.02, 0.06]
    pids, timings = alternating_timings_in_workers(sleeping_jobs, keys, ("sleep", "burn"), torch.device("cpu"),
                                                   repeats=3)
    assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()
    for key in keys:
        assert timings["sleep"][key].seconds >= key  # (a loaded machine may wake the worker late: no upper bound)
        assert timings["sleep"][key].user_seconds < key / 2  # sleeping costs no CPU time of the worker
        assert timings["burn"][key].user_seconds + timings["burn"][key].system_seconds >= key * 0.9


def test_a_worker_that_dies_is_an_error_not_a_hang():
    with pytest.raises(RuntimeError, match="worker process died"):
        alternating_timings_in_workers(dying_jobs, ["a"], ("die",), torch.device("cpu"), repeats=1)
