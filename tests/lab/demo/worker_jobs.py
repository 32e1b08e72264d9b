"""Jobs for ``train_many``'s worker processes in tests (importable by spawned workers through sys.path)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from masra.config import Config


def record_pid_and_wait(name: str, cfg: Config) -> None:
    """Write this worker's pid into the job's output folder, then stay busy like a long training run."""
    out = Path(cfg.train.output_dir)
    out.mkdir(parents=True)
    (out / "pid").write_text(str(os.getpid()))
    time.sleep(120)
