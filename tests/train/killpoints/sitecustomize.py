"""Test-only kill points: Python imports this at start-up when this folder is on PYTHONPATH (see kill.py).

Nothing in the package knows about it; it patches from the outside:
- ``MASRA_TEST_KILL_AT_STEP=N``: SIGKILL this process right after its N-th optimizer step (mid-epoch);
- ``MASRA_TEST_KILL_AT_SWAP=NAME:K``: SIGKILL it right after the K-th rename of a folder ``NAME`` to
  ``NAME.old``, i.e. between the two renames of a checkpoint swap.
"""

import os
import signal
from pathlib import Path


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_at_step(target: int) -> None:
    from torch.optim.optimizer import register_optimizer_step_post_hook

    steps = 0

    def after_step(optimizer, args, kwargs) -> None:
        nonlocal steps
        steps += 1
        if steps == target:
            _die()

    register_optimizer_step_post_hook(after_step)


def _kill_at_swap(name: str, target: int) -> None:
    rename = os.replace
    swaps = 0

    def replace(src, dst, *args, **kwargs):
        nonlocal swaps
        rename(src, dst, *args, **kwargs)
        if Path(src).name == name and Path(dst).name == f"{name}.old":
            swaps += 1
            if swaps == target:
                _die()

    os.replace = replace


if os.environ.get("MASRA_TEST_KILL_AT_STEP"):
    _kill_at_step(int(os.environ["MASRA_TEST_KILL_AT_STEP"]))
if os.environ.get("MASRA_TEST_KILL_AT_SWAP"):
    _folder, _count = os.environ["MASRA_TEST_KILL_AT_SWAP"].split(":")
    _kill_at_swap(_folder, int(_count))
