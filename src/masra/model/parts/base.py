"""What a MASRA part declares (:class:`Part`) and the hooks the grounding model calls on it (:class:`PartModule`).

A part is one file in this package: its config dataclass (``model.<name>``), the config of its losses (fields
that join ``loss.*``), its module, its loss function and the names of its weighted loss terms, gathered in one
``PART = Part(...)``; ``masra.model.parts.PARTS`` registers it (one line). The config classes, the model and
the criterion are assembled from that registry, so nothing else changes when a part is added.

The model runs its stages in order and, at each stage, calls the hook of every enabled part in registry order
(docs/ARCHITECTURE.md, "Adding a MASRA part"):

1. ``interaction_inputs`` / ``after_interaction``: around the text-to-video interaction (DAI's codebook);
2. ``relate``: on the temporal encoder's clips, before any refinement (LRCA's relation features);
3. ``refine``: on the encoder sequence [context tokens ; clips] (SORA's layer);
4. ``enhance``: on the clip memory (SGE);
5. ``rescore``: on the saliency scores (DAI adds its relevance log-odds);
6. ``outputs``: extra outputs for the losses, after the decoder (ESTA, DAI's codebook, LRCA's temperature);
7. ``diagnostics``: scalar parameters to log in training (β, temperatures).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from masra.data.batch import GroundingBatch
from masra.errors import MasraError

Stats = dict[str, torch.Tensor]  # diagnostics of one pass: name -> 0-d tensor
Outputs = dict[str, Any]


def check_choice(value: str, choices: tuple[str, ...], field: str) -> None:
    """The check of a part's string setting that takes one of ``choices``: for its config's ``validate`` and for a
    module built without a config alike."""
    if value not in choices:
        raise MasraError(f"must be one of {', '.join(choices)}, got {value!r}", field=field)


@dataclass(frozen=True)
class PartContext:
    """What every part may need to build its module: the model's sizes and the prior text dimension."""

    hidden_dim: int
    nheads: int
    dim_feedforward: int
    dropout: float
    activation: str
    semantic_dim: int | None


class PartModule(nn.Module):
    """A part's module. Every hook passes through unchanged by default; a part overrides the ones it uses."""

    def interaction_inputs(self, video: torch.Tensor, video_mask: torch.Tensor, stats: Stats | None) -> dict[str, Any]:
        """Keyword arguments for the text-to-video attention (video [B, L, d] before the interaction)."""
        return {}

    def after_interaction(
        self, relevances: list[torch.Tensor | None], video_mask: torch.Tensor, inputs: dict[str, Any], stats: Stats | None
    ) -> Outputs:
        """Outputs from the interaction: each T2V layer's relevance and this part's ``interaction_inputs``."""
        return {}

    def relate(self, clips: torch.Tensor) -> Outputs:
        """Outputs from the temporal encoder's clips [B, L, d] (before ``refine``); later hooks see them."""
        return {}

    def refine(
        self,
        sequence: torch.Tensor,
        mask: torch.Tensor,
        pos: torch.Tensor,
        extras: Outputs,
        stats: Stats | None,
        context: int,
    ) -> torch.Tensor:
        """The encoder sequence [B, G+L, d] refined: [context tokens ; clips] with G = ``context`` (QD-DETR: its
        global token, G = 1; Moment-DETR: its query tokens, G = N), mask [B, G+L], pos [B, G+L, d]."""
        return sequence

    def enhance(self, memory: torch.Tensor, video_mask: torch.Tensor, stats: Stats | None) -> tuple[torch.Tensor, Outputs]:
        """The clip memory [B, L, d] enhanced, and outputs."""
        return memory, {}

    def rescore(self, saliency: torch.Tensor, extras: Outputs) -> torch.Tensor:
        """The saliency scores [B, L] given this pass's part outputs ``extras`` (same batch rows)."""
        return saliency

    def outputs(
        self, memory: torch.Tensor, video_mask: torch.Tensor, batch: GroundingBatch, projected: torch.Tensor
    ) -> Outputs:
        """Outputs for the losses from the final clip memory [B, L, d] or the projected clips before any
        interaction with the query [B, L, d] (both modes; see ``Part.training_only``)."""
        return {}

    def diagnostics(self) -> dict[str, torch.Tensor]:
        """Scalar parameters to log per training step."""
        return {}


@dataclass(frozen=True)
class Part:
    """The declaration of one MASRA part.

    ``config``: the dataclass of ``model.<name>`` (with an ``enabled: bool`` field); ``loss_config``: a dataclass
    whose fields join ``LossConfig`` (``loss.<field>``, names prefixed with the part's name); ``weights``: each
    weighted loss term -> the ``LossConfig`` field that holds its weight; ``loss(outputs, batch, loss_cfg)``:
    every term of the part's loss by name (weighted ones, ``<term>_chance`` levels, logged statistics).
    ``module_name``: the model attribute of its module (checkpoint keys; default: ``name``).
    ``t2v_attention(cfg, ctx)``: a factory of the text-to-video attention module that replaces the plain one.
    ``negative_pass_outputs``: outputs of which the losses also read the negative pairs' half (``<key>_neg``).
    ``needs_semantic_dim``: the module needs the prior text dimension. ``validate(cfg)``: checks ``model.<name>``.
    """

    name: str
    config: type
    build: Callable[[Any, PartContext], PartModule]
    loss: Callable[[Outputs, GroundingBatch, Any], dict[str, torch.Tensor]] | None = None
    loss_config: type | None = None
    weights: Mapping[str, str] = field(default_factory=dict)
    module_name: str | None = None
    t2v_attention: Callable[[Any, PartContext], Callable[[], nn.Module]] | None = None
    negative_pass_outputs: tuple[str, ...] = ()
    needs_semantic_dim: bool = False
    validate: Callable[[Any], None] | None = None

    @property
    def attribute(self) -> str:
        return self.module_name or self.name
