"""Run ``masra train`` (or torchrun) in a subprocess, optionally with a test-only kill point (killpoints/)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

KILLPOINTS = Path(__file__).parent / "killpoints"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def train_command(config: Path, *args: str, processes: int = 1) -> list[str]:
    launcher = TORCHRUN if processes == 2 else [sys.executable]
    return [*launcher, "-m", "masra.cli.main", "train", "--config", str(config), "--no-progress", *args]


def run(command: list[str], *, kill_at_step: int | None = None, kill_at_swap: str | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("MASRA_TEST_KILL_AT_STEP", None)
    env.pop("MASRA_TEST_KILL_AT_SWAP", None)
    if kill_at_step is not None or kill_at_swap is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(KILLPOINTS), env.get("PYTHONPATH")) if p)
    if kill_at_step is not None:
        env["MASRA_TEST_KILL_AT_STEP"] = str(kill_at_step)
    if kill_at_swap is not None:
        env["MASRA_TEST_KILL_AT_SWAP"] = kill_at_swap
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
