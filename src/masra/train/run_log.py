"""Where a run reports: a plain-text log file, TensorBoard scalars and the ``masra.train`` logger.

Only the main process (rank 0) creates a RunLog with files; other ranks get one that writes nothing.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger("masra.train")


class RunLog:
    def __init__(self, run_dir: Path | None) -> None:
        self.run_dir = run_dir
        self._writer = None
        self._text = None
        if run_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
            self._text = (run_dir / "train.log").open("a", encoding="utf-8")

    def line(self, message: str) -> None:
        """One line in train.log (timestamped) and on the console."""
        logger.info(message)
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
