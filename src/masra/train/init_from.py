"""``masra train --init-from RUN``: start a new run from another run's weights (e.g. a converted QD-DETR
checkpoint), with every parameter that the checkpoint does not have (MASRA parts switched on now) left at
its fresh initialisation. The optimiser, scheduler, epoch counter and RNG start fresh."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from masra.checkpoint import WEIGHTS_FILE, find_checkpoint, read_weights, unwrap
from masra.data.jsonl import write_json
from masra.errors import MasraError


@dataclass
class InitReport:
    source: Path  # the checkpoint folder the weights came from
    loaded: list[str]  # parameters taken from it
    fresh: list[str]  # parameters it does not have: freshly initialised
    unused: list[str]  # its tensors this model has no parameter for

    def summary(self) -> str:
        def modules(keys: list[str]) -> str:
            names = sorted({".".join(k.split(".")[:2]) if k.split(".")[0] in ("t2v_encoder", "encoder", "decoder")
                            else k.split(".")[0] for k in keys})
            return ", ".join(names) or "none"

        return (f"initialised from {self.source}: {len(self.loaded)} tensors loaded; {len(self.fresh)} fresh "
                f"({modules(self.fresh)}); {len(self.unused)} unused ({modules(self.unused)})")

    def write(self, path: str | Path) -> None:
        """The full key lists as JSON (atomic)."""
        write_json(path, {"source": str(self.source), "loaded": self.loaded, "fresh": self.fresh,
                          "unused": self.unused})


def refuse_source_in_run_folder(source: str | Path, run_dir: str | Path) -> None:
    """Refuse a new run whose folder holds ``source``'s checkpoint or lies inside it: preparing the run folder
    (``--force`` empties it) would delete the weights before they are read."""
    folder = find_checkpoint(source).resolve()
    run = Path(run_dir).resolve()
    if folder.is_relative_to(run) or run.is_relative_to(folder):
        raise MasraError(f"--init-from {source} and --output-dir {run_dir} are the same folder (or one holds the "
                         "other): starting the new run would delete the weights it starts from; choose another "
                         "--output-dir")


def load_initial_weights(model: torch.nn.Module, source: str | Path) -> InitReport:
    """Copy every same-named tensor of ``source``'s weights into ``model``; a shape difference is an error."""
    folder = find_checkpoint(source)
    path = folder / WEIGHTS_FILE
    weights = read_weights(folder)
    own = unwrap(model).state_dict()
    wrong = [f"{k} {tuple(weights[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if k in weights and weights[k].shape != v.shape]
    if wrong:
        raise MasraError(f"tensor shapes differ from this config's model (same width and layers needed): "
                         f"{'; '.join(wrong[:4])}", file=path)
    loaded = [k for k in own if k in weights]
    if not loaded:
        raise MasraError("no tensor of this checkpoint matches the model", file=path)
    unwrap(model).load_state_dict({k: weights[k] for k in loaded}, strict=False)
    return InitReport(folder, loaded, [k for k in own if k not in weights], sorted(set(weights) - set(own)))
