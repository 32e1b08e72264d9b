"""The run folder: what a run writes, and the rules for starting, resuming and overwriting one.

Layout::

    RUN_DIR/config.yaml          resolved config (dims filled in from the data)
    RUN_DIR/train.log            plain-text log (one line per epoch and evaluation)
    RUN_DIR/tensorboard/         TensorBoard event files
    RUN_DIR/eval/                epoch_NNNN_{split}_preds.jsonl and epoch_NNNN_{split}_metrics.json
    RUN_DIR/last/                checkpoint after the latest finished epoch (resume point)
    RUN_DIR/best/                checkpoint of the best evaluation, with its preds and metrics.json
"""

from __future__ import annotations

import shutil
from pathlib import Path

from masra.errors import MasraError

RUN_ARTIFACTS = ("config.yaml", "train.log", "tensorboard", "eval", "last", "best", "last.tmp", "last.old",
                 "best.tmp", "best.old")


def last_checkpoint(run_dir: Path) -> Path | None:
    """The folder a resume continues from (``last/``, or ``last.old`` left by an interrupted swap), if any."""
    for name in ("last", "last.old"):
        if (run_dir / name / "state.pt").is_file():
            return run_dir / name
    return None


def prepare_new_run(run_dir: Path, *, force: bool) -> None:
    """Refuse a non-empty folder unless ``force``; with ``force`` remove only what a run writes there."""
    if run_dir.exists() and not run_dir.is_dir():
        raise MasraError("output path exists and is not a folder", file=run_dir)
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not force:
            raise MasraError(
                "run folder is not empty; pass --resume auto to continue it or --force to start over",
                file=run_dir,
            )
        for name in RUN_ARTIFACTS:
            path = run_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)


def holds_only_run_artifacts(run_dir: Path) -> bool:
    """True when everything in ``run_dir`` is something a run writes (a run killed before its first checkpoint)."""
    return run_dir.is_dir() and all(path.name in RUN_ARTIFACTS for path in run_dir.iterdir())
