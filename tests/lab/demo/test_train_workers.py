"""``train_many``'s worker processes end with their parent: killing ``masra demo``/``masra ablate`` leaves no
process training into the run folders that a rerun would train again."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

PARENT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from masra.config import Config
    from masra.lab.demo.training import train_many
    from worker_jobs import record_pid_and_wait

    jobs = []
    for i in range(3):
        cfg = Config()
        cfg.train.output_dir = str(Path({out!r}) / f"job{{i}}")
        jobs.append((f"job{{i}}", cfg))
    list(train_many(jobs, record_pid_and_wait, workers=2))
    """
)


def _running(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        return "State:\tZ" not in status.read_text()  # a zombie has ended; only its reaping is left
    except FileNotFoundError:
        return False


def _wait_for(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def test_workers_exit_when_their_parent_is_killed(tmp_path):
    script = PARENT.format(tests=str(Path(__file__).parent), out=str(tmp_path))
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        pid_files = [tmp_path / f"job{i}" / "pid" for i in range(2)]
        assert _wait_for(lambda: all(p.is_file() and p.read_text() for p in pid_files), 120), "workers never started"
        workers = [int(p.read_text()) for p in pid_files]
        assert all(_running(pid) for pid in workers)
    finally:
        parent.kill()
        parent.wait()
    assert _wait_for(lambda: not any(_running(pid) for pid in workers), 15), "workers outlived their parent"
    assert not (tmp_path / "job2").exists()  # the queued third job never started


def test_results_come_back_one_by_one_so_each_finished_run_can_be_recorded():
    """masra ablate writes each run's result.json as soon as it is yielded: a kill loses only unfinished runs."""
    from masra.config import Config
    from masra.lab.demo.training import train_many

    trained = []
    results = train_many([("a", Config()), ("b", Config())], lambda name, cfg: trained.append(name) or name, workers=1)
    assert next(results) == "a" and trained == ["a"]
    assert list(results) == ["b"] and trained == ["a", "b"]
