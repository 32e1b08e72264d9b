"""The MASRA parts' training diagnostics of a finished run, read back from its TensorBoard log.

The training loop logs every criterion term per epoch under ``train/``; the diagnostics are the
``diag_*`` terms (gates, β, attention shares, temperatures), the ``*_chance`` levels and the auxiliary
losses that have a chance level (docs/method.md).
"""

from __future__ import annotations

from pathlib import Path

PREFIX = "train/"
CHANCE_SUFFIX = "_chance"


def is_diagnostic(name: str, names: set[str]) -> bool:
    """A diagnostic, a chance level, or a loss logged next to its chance level."""
    return name.startswith("diag_") or name.endswith(CHANCE_SUFFIX) or f"{name}{CHANCE_SUFFIX}" in names


def read_diagnostics(run_dir: str | Path, epoch: int | None) -> dict[str, float]:
    """name -> value of every diagnostic logged for ``epoch`` (1-based) in ``run_dir/tensorboard``;
    empty when the epoch is unknown or the log holds none (the baseline)."""
    folder = Path(run_dir) / "tensorboard"
    if epoch is None or not folder.is_dir():
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    tags = [tag for tag in events.Tags()["scalars"] if tag.startswith(PREFIX)]
    names = {tag[len(PREFIX):] for tag in tags}
    values: dict[str, float] = {}
    for tag in tags:
        name = tag[len(PREFIX):]
        at_epoch = [event.value for event in events.Scalars(tag) if event.step == epoch]
        if at_epoch and is_diagnostic(name, names):
            values[name] = float(at_epoch[-1])  # the last write wins (a resumed epoch is logged again)
    return dict(sorted(values.items()))
