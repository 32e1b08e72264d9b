"""The job runner: one job at a time, progress with an ETA, one-sentence errors."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from masra.errors import MasraError
from masra.web.errors import RequestError
from masra.web.jobs import INTERNAL_ERROR, JobRunner


def wait_for(runner: JobRunner, job_id: str, predicate, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = runner.status(job_id)
        if predicate(status):
            return status
        time.sleep(0.01)
    raise AssertionError(f"job never reached the state; last: {runner.status(job_id)}")


@pytest.fixture
def runner():
    runner = JobRunner()
    yield runner
    runner.shutdown()


def test_progress_eta_and_result(runner):
    step = threading.Event()
    release = threading.Event()

    def work(progress):
        time.sleep(0.05)
        progress("decode", 1, 4)  # 1 of 4 frames took >= 0.05 s
        step.wait(10)
        progress("encode", 1, 4)
        release.wait(10)
        for stage in ("decode", "encode"):  # interleaved stages, as extraction reports them chunk by chunk
            progress(stage, 4, 4)
        progress("ground", 1, 1)
        return {"answer": 42}

    job = runner.submit("test", work)
    running = wait_for(runner, job.id, lambda s: s["state"] == "running" and s["done"] == 1)
    assert (running["stage"], running["done"], running["total"]) == ("decode", 1, 4)
    assert running["eta_s"] >= 3 * 0.05  # 3 more frames at the rate of the first
    step.set()
    running = wait_for(runner, job.id, lambda s: s["stage"] == "encode")
    decode, encode = running["stages"]
    assert running["eta_s"] == pytest.approx(3 * decode["seconds"] + 3 * encode["seconds"])
    release.set()
    done = wait_for(runner, job.id, lambda s: s["state"] == "done")
    assert done["result"] == {"answer": 42} and done["error"] is None and done["eta_s"] is None
    assert [(s["stage"], s["done"], s["total"]) for s in done["stages"]] == [("decode", 4, 4), ("encode", 4, 4),
                                                                             ("ground", 1, 1)]
    assert done["stages"][0]["seconds"] >= 0.05
    assert sum(s["seconds"] for s in done["stages"]) <= done["elapsed_s"]
    time.sleep(0.05)
    assert runner.status(job.id)["elapsed_s"] == done["elapsed_s"]  # the clock stops when the job ends


def test_jobs_run_one_at_a_time(runner):
    release = threading.Event()
    first = runner.submit("first", lambda progress: release.wait(10) and {})
    second = runner.submit("second", lambda progress: {"second": True})
    wait_for(runner, first.id, lambda s: s["state"] == "running")
    assert runner.status(second.id)["state"] == "queued"
    release.set()
    assert wait_for(runner, second.id, lambda s: s["state"] == "done")["result"] == {"second": True}


def test_user_errors_reach_the_page_as_their_message(runner):
    def bad_query(progress):
        raise MasraError("the query has no words the text encoder knows", field="query")

    status = wait_for(runner, runner.submit("bad", bad_query).id, lambda s: s["state"] == "failed")
    assert status["error"] == "field 'query': the query has no words the text encoder knows"
    assert status["result"] is None


def test_a_crash_is_logged_but_the_page_gets_no_stack_trace(runner, caplog):
    def crash(progress):
        raise RuntimeError("secret internal detail")

    with caplog.at_level(logging.ERROR, logger="masra.web"):
        status = wait_for(runner, runner.submit("crash", crash).id, lambda s: s["state"] == "failed")
    assert status["error"] == INTERNAL_ERROR
    assert "secret internal detail" not in str(status)
    assert any(r.exc_info and "secret internal detail" in str(r.exc_info[1]) for r in caplog.records)


def test_unknown_job_is_a_404(runner):
    with pytest.raises(RequestError) as err:
        runner.status("nope")
    assert err.value.status == 404


def test_a_job_queued_behind_many_others_keeps_its_status():
    runner = JobRunner(max_queued=300, max_finished=5)
    release = threading.Event()
    try:
        runner.submit("blocker", lambda progress: release.wait(10) and {})
        queued = [runner.submit(f"job {i}", lambda progress: {}) for i in range(250)]
        assert runner.status(queued[0].id)["state"] == "queued"  # not "no such job" while it waits
        release.set()
        wait_for(runner, queued[-1].id, lambda s: s["state"] == "done")
        # Only finished jobs are forgotten, oldest first, past max_finished.
        with pytest.raises(RequestError):
            runner.status(queued[0].id)
        assert runner.status(queued[-5].id)["state"] == "done"
    finally:
        runner.shutdown()
