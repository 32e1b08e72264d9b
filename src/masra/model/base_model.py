"""What every backbone shares: the input projections, the MASRA parts' modules and their diagnostics.

A backbone (``model.backbone``, masra.model.backbones) is a subclass with its own stages and ``forward``; the
output contract is the one of docs/ARCHITECTURE.md ("Model"). The parts plug into a backbone's stages through
their hooks (masra.model.parts.base); docs/method.md says where each part sits on each backbone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from masra.config import ModelConfig
from masra.errors import MasraError
from masra.model.layers import InputProjection, run_layer
from masra.model.parts import PARTS, PartContext, PartModule


def part_stream_seed(state: torch.Tensor, name: str) -> int:
    """The seed of part ``name``'s initial weights, from the random state the baseline's modules left: one
    stream per (run seed, part), independent of which other parts are built."""
    digest = hashlib.sha256(state.numpy().tobytes() + name.encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class BaseGroundingModel(nn.Module):
    """Input projections (built first, so a seed gives every backbone's projections the same weights) and the
    enabled parts (``self.parts``, in registry order); subclasses build the rest, then :meth:`_build_part_modules`."""

    def __init__(self, cfg: ModelConfig, v_feat_dim: int, t_feat_dim: int, semantic_dim: int | None) -> None:
        super().__init__()
        d = cfg.hidden_dim
        if d % cfg.nheads or d % 4:
            raise MasraError(
                f"hidden_dim {d} must be divisible by nheads {cfg.nheads} and by 4", field="model.hidden_dim"
            )
        self.hidden_dim = d
        self.video_proj = InputProjection(v_feat_dim, d, cfg.n_input_proj, cfg.input_dropout)
        self.text_proj = InputProjection(t_feat_dim, d, cfg.n_input_proj, cfg.input_dropout)
        self.part_context = PartContext(d, cfg.nheads, cfg.dim_feedforward, cfg.dropout, cfg.activation, semantic_dim)
        self.parts = [part for part in PARTS if getattr(cfg, part.name).enabled]
        self.t2v_encoder: nn.Module | None = None  # the text-to-video encoder, where the backbone has one
        self.record_diagnostics = True  # training passes record the parts' diagnostics (see step_statistics)

    def _build_part_modules(self, cfg: ModelConfig) -> None:
        """Each enabled part's module as the attribute ``part.attribute`` (its checkpoint keys), in registry
        order. Called after every baseline module and its initialisation, so switching parts on never changes
        the baseline's initial weights; and each part draws its weights (with what it attaches to the backbone)
        from a random stream of its own (:func:`part_stream_seed`), so a part starts from the same weights
        whichever other parts are on: all parts and all-but-one differ only by the part left out (the
        ablation's pairing). The global stream is left as the baseline left it."""
        context = self.part_context
        state = torch.get_rng_state()  # the same for every variant of a seed: only baseline modules drew from it
        for part in self.parts:
            if part.needs_semantic_dim and context.semantic_dim is None:
                raise MasraError(
                    f"{part.name.upper()} needs the prior text dimension: give the training data a prior_dir",
                    field="data.prior_dir",
                )
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(part_stream_seed(state, part.name))
                setattr(self, part.attribute, part.build(getattr(cfg, part.name), context))
                if part.t2v_attention is not None:
                    self._attach_t2v_attention(part.t2v_attention(getattr(cfg, part.name), context), cfg)

    def _attach_t2v_attention(self, make_attention: Callable[[], nn.Module], cfg: ModelConfig) -> None:
        """Give the backbone's text-to-video stage the attention of a part that replaces it (DAI). Called right
        after that part's module is built, before the next part's: the random stream, hence every later part's
        initial weights, is the same on every backbone and as before backbones existed."""
        raise MasraError("this backbone has no text-to-video stage for a part's attention", field="model.backbone")

    def part_modules(self) -> list[PartModule]:
        """The enabled parts' modules, in registry order."""
        return [getattr(self, part.attribute) for part in self.parts]

    def project_inputs(self, video_feats: torch.Tensor, query_feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, L, Dv], [B, N, Dt] -> video [B, L, d], text [B, N, d]: LN -> Dropout -> Linear (-> ReLU) stacks."""
        return run_layer(self.video_proj, video_feats), self.text_proj(query_feats)

    def interact(
        self,
        video: torch.Tensor,
        video_pos: torch.Tensor,
        video_mask: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        stats: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Text-conditioned clips [B, L, d] through ``self.t2v_encoder`` (unchanged clips when the backbone has
        none), and the parts' outputs of the interaction (DAI: relevance per layer and averaged, the codebook C_v).
        ``stats`` (a dict, or None) receives the parts' diagnostics."""
        if self.t2v_encoder is None:
            return video, {}
        modules = self.part_modules()
        inputs: dict[str, Any] = {}
        for module in modules:
            inputs.update(module.interaction_inputs(video, video_mask, stats))
        video, relevances = self.t2v_encoder(video, video_pos, text, text_mask, **inputs)
        extras: dict[str, Any] = {}
        for module in modules:
            extras.update(module.after_interaction(relevances, video_mask, inputs, stats))
        return video, extras

    def rescore_saliency(self, saliency: torch.Tensor, extras: dict[str, Any]) -> torch.Tensor:
        """The backbone's saliency scores [B, L] through every enabled part's ``rescore`` hook."""
        for module in self.part_modules():
            saliency = module.rescore(saliency, extras)
        return saliency

    def step_statistics(self) -> dict[str, torch.Tensor] | None:
        """The dict this forward's parts record their diagnostics in: a training pass with
        ``record_diagnostics`` set (the training loop sets it on one step in ``train.diagnostics_every``), else None
        (the parts then compute none)."""
        return {} if self.training and self.record_diagnostics else None

    def _diagnostics(self, stats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The pass's statistics plus the parts' scalar parameters, detached copies (a parameter's value as
        this pass used it, not after the optimizer step): name -> 0-d tensor."""
        values = dict(stats)
        for module in self.part_modules():
            values.update(module.diagnostics())
        return {name: value.detach().float().clone() for name, value in values.items()}


def xavier_matrices(module: nn.Module) -> None:
    """Xavier-uniform for every matrix of ``module`` (DETR's, Moment-DETR's and QD-DETR's transformer init)."""
    for param in module.parameters():
        if param.dim() > 1:
            nn.init.xavier_uniform_(param)
