"""Where a run reports: a plain-text log file, TensorBoard scalars and the ``masra.train`` logger.

Only the main process (rank 0) creates a RunLog with files; other ranks get one that writes nothing.
TensorBoard scalars need the ``tensorboard`` extra; without it the run goes on and says once that they are off.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from masra.extras import install_hint, missing_modules

logger = logging.getLogger("masra.train")


class RunLog:
    """``tensorboard``: write TensorBoard scalars (when the package is installed); False turns them off quietly."""

    def __init__(self, run_dir: Path | None, tensorboard: bool = True) -> None:
        self.run_dir = run_dir
        self._writer = None
        self._text = None
        if run_dir is not None:
            self._text = (run_dir / "train.log").open("a", encoding="utf-8")
            if tensorboard and missing_modules("tensorboard"):
                self.line(f"TensorBoard logging is off: the tensorboard package is not installed "
                          f"({install_hint('tensorboard')} turns it on; masra train --no-tensorboard silences this)",
                          level=logging.WARNING)
            elif tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def line(self, message: str, level: int = logging.INFO) -> None:
        """One line in train.log (timestamped) and on the console."""
        logger.log(level, message)
        if self._text is not None:
            self._text.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
            self._text.flush()

    def scalars(self, prefix: str, values: dict[str, Any], step: int) -> None:
        if self._writer is None:
            return
        for key, value in values.items():
            if isinstance(value, (int, float)):
                self._writer.add_scalar(f"{prefix}/{key}", float(value), step)
        self._writer.flush()

    def text(self, tag: str, value: dict[str, Any]) -> None:
        if self._writer is not None:
            self._writer.add_text(tag, "```\n" + json.dumps(value, indent=2) + "\n```")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._text is not None:
            self._text.close()
