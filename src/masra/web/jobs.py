"""Grounding jobs: run one at a time on a worker thread (the model is not shared between threads), with a
status the page polls: state, current stage, how far it is, and an ETA for the stage."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from masra.errors import MasraError
from masra.web.errors import RequestError

logger = logging.getLogger("masra.web")

Progress = Callable[[str, int, int], None]
Work = Callable[[Progress], dict[str, Any]]

INTERNAL_ERROR = "internal error while grounding; the server log has the details"


@dataclass
class StageProgress:
    """One stage of a job. Stages may interleave (decode a chunk, encode it, decode the next...): the time
    between two reports is counted for the stage of the later report."""

    stage: str
    done: int = 0
    total: int = 0
    seconds: float = 0.0

    def eta(self) -> float:
        return self.seconds / self.done * (self.total - self.done) if 0 < self.done < self.total else 0.0


@dataclass
class Job:
    id: str
    description: str
    state: str = "queued"  # queued → running → done | failed
    stage: str = "queued"  # the stage of the latest report ("start" until the first one)
    created: float = field(default_factory=time.monotonic)
    finished: float | None = None
    last_report: float = 0.0
    stages: dict[str, StageProgress] = field(default_factory=dict)  # in the order they first reported
    result: dict[str, Any] | None = None
    error: str | None = None

    def report(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        progress = self.stages.setdefault(stage, StageProgress(stage))
        progress.done, progress.total = done, total
        progress.seconds += now - self.last_report
        self.stage, self.last_report = stage, now

    def status(self) -> dict[str, Any]:
        current = self.stages.get(self.stage, StageProgress(self.stage))
        unfinished = [s for s in self.stages.values() if s.done < s.total]
        eta = sum(s.eta() for s in unfinished) if self.state == "running" and unfinished else None
        return {"job": self.id, "state": self.state, "stage": self.stage, "done": current.done,
                "total": current.total, "eta_s": eta, "elapsed_s": (self.finished or time.monotonic()) - self.created,
                "stages": [asdict(s) for s in self.stages.values()], "result": self.result, "error": self.error}


class JobRunner:
    """Queues work, at most ``max_queued`` jobs waiting behind the running one (more are refused with 429).
    Every queued and running job keeps its status; of the finished ones, the latest ``max_finished``."""

    def __init__(self, max_queued: int = 20, max_finished: int = 200) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="masra-job")
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self.max_queued = max_queued
        self.max_finished = max_finished

    def submit(self, description: str, work: Work, on_finish: Callable[[], None] | None = None) -> Job:
        """Queue ``work``; ``on_finish`` runs after it, whatever its outcome (e.g. to release its upload)."""
        job = Job(secrets.token_hex(8), description)
        with self._lock:
            waiting = sum(j.state == "queued" for j in self._jobs.values())
            if waiting >= self.max_queued:
                raise RequestError(429, f"{waiting} {'query is' if waiting == 1 else 'queries are'} waiting "
                                        "already, this server's limit; try again in a moment "
                                        "(masra serve --max-queued-jobs)")
            self._jobs[job.id] = job
        self._executor.submit(self._run, job, work, on_finish)
        return job

    def status(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise RequestError(404, "no such job (the server may have restarted); run the query again")
            return job.status()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _run(self, job: Job, work: Work, on_finish: Callable[[], None] | None) -> None:
        def progress(stage: str, done: int, total: int) -> None:
            with self._lock:
                job.report(stage, done, total)

        with self._lock:
            job.state, job.stage, job.last_report = "running", "start", time.monotonic()
        started = time.monotonic()
        try:
            try:
                result = work(progress)
            finally:  # before the job shows as finished, so that what it held is free by then
                if on_finish is not None:
                    on_finish()
        except (MasraError, RequestError) as err:
            self._finish(job, error=str(err))
            logger.info("job %s (%s) failed: %s", job.id, job.description, err)
        except Exception:  # noqa: BLE001 - the page gets one sentence, the log gets the traceback
            logger.exception("job %s (%s) crashed", job.id, job.description)
            self._finish(job, error=INTERNAL_ERROR)
        else:
            self._finish(job, result=result)
            logger.info("job %s (%s) done in %.1f s", job.id, job.description, time.monotonic() - started)

    def _finish(self, job: Job, result: dict[str, Any] | None = None, error: str | None = None) -> None:
        with self._lock:
            job.state = "failed" if error is not None else "done"
            job.result, job.error, job.finished = result, error, time.monotonic()
            finished = [j.id for j in self._jobs.values() if j.finished is not None]  # oldest first
            for old in finished[:max(0, len(finished) - self.max_finished)]:
                del self._jobs[old]
