"""The Moment-DETR backbone (``model.backbone: moment_detr``; Lei et al. 2021, jayleicn/moment_detr).

Stages:
1. ``project_inputs``: LN -> Dropout -> Linear (-> ReLU) stacks for clips and query tokens (as QD-DETR).
2. ``interact``: nothing in Moment-DETR; a part that brings a text-to-video interaction (DAI) runs it here.
3. ``encode_joint``: one post-norm self-attention encoder over the concatenation [clips ; query tokens]
   (clip positions: the normalised sine; token positions: zeros) -> clip memory and token memory.
4. ``decode``: DETR's decoder with learned query positions over the whole memory [clips ; tokens], class head,
   span head (sigmoid of an MLP; no anchors); ``score_saliency``: a linear map of each clip's memory.

MASRA parts (docs/method.md, "Parts on each backbone") plug into the same hooks as on QD-DETR: DAI brings the
T2V encoder Moment-DETR lacks (stage 2), LRCA relates the encoder's clip rows, SORA refines [tokens ; clips]
with the query tokens as its context, SGE enhances the clip rows (stage 3); ESTA and LRCA add outputs.

With ``model.contrastive_align`` (Moment-DETR's ``contrastive_align_loss``, off in its released runs) two
linear heads project the decoder states and the token memory to ``contrastive_dim`` for the contrastive alignment
loss (masra.model.criterion). What Moment-DETR builds and never uses is not built here: the text position
embedding (``txt_position_embed``, read only with ``use_txt_pos``) and, with the alignment on, the projection of
the clip memory (``contrastive_align_projection_vid``: an output that no loss reads).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from masra.config import ModelConfig
from masra.data.batch import GroundingBatch
from masra.model.base_model import BaseGroundingModel, xavier_matrices
from masra.model.encoder import TemporalEncoder
from masra.model.layers import MLP, in_float32
from masra.model.position_encoding import video_position_encoding
from masra.model.query_decoder import QueryDecoder
from masra.model.t2v_encoder import T2VEncoder


class MomentDETR(BaseGroundingModel):
    """``forward(batch)`` returns ``pred_logits`` [B, Q, 2] (class 0 = foreground), ``pred_spans`` [B, Q, 2]
    (center, width in [0, 1]), ``saliency_scores`` [B, L], ``aux_outputs`` (one dict per earlier decoder layer),
    ``video_mask`` [B, L] and ``memory`` [B, L, d] (the clip memory), plus the enabled parts' outputs (see
    :class:`masra.model.grounding.GroundingModel`; no ``*_neg`` outputs: Moment-DETR has no negative pairs)."""

    def __init__(
        self, cfg: ModelConfig, v_feat_dim: int, t_feat_dim: int, semantic_dim: int | None = None
    ) -> None:
        super().__init__(cfg, v_feat_dim, t_feat_dim, semantic_dim)
        d = cfg.hidden_dim
        self.encoder = TemporalEncoder(cfg.enc_layers, d, cfg.nheads, cfg.dim_feedforward, cfg.dropout, cfg.activation)
        self.decoder = QueryDecoder(cfg.dec_layers, d, cfg.nheads, cfg.dim_feedforward, cfg.dropout, cfg.activation)
        for module in (self.encoder, self.decoder):
            xavier_matrices(module)  # Moment-DETR's Transformer._reset_parameters
        self.queries = nn.Embedding(cfg.num_queries, d)  # learned query positions
        self.class_head = nn.Linear(d, 2)  # index 0 = foreground
        self.span_head = MLP(d, d, 2, 3)
        self.saliency_head = nn.Linear(d, 1)
        self.contrastive_align = cfg.contrastive_align
        if cfg.contrastive_align:
            self.contrastive_query = nn.Linear(d, cfg.contrastive_dim)
            self.contrastive_text = nn.Linear(d, cfg.contrastive_dim)
        self._build_part_modules(cfg)

    def _attach_t2v_attention(self, make_attention: Callable[[], nn.Module], cfg: ModelConfig) -> None:
        """A part with a text-to-video attention (DAI) brings the T2V encoder Moment-DETR lacks:
        ``model.t2v_layers`` QD-DETR T2V layers with the part's attention, run before the joint encoder."""
        self.t2v_encoder = T2VEncoder(
            make_attention, cfg.t2v_layers, self.hidden_dim, cfg.dim_feedforward, cfg.dropout, cfg.activation
        )
        xavier_matrices(self.t2v_encoder)

    # ----- stage 2: interact (BaseGroundingModel), only when a part brought a T2V encoder ---------------

    # ----- stage 3 -------------------------------------------------------------------------------------
    def encode_joint(
        self,
        video: torch.Tensor,
        video_pos: torch.Tensor,
        video_mask: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        stats: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Self-attention over [clips ; tokens] -> (clip memory [B, L, d], token memory [B, N, d], part outputs).

        The parts ``relate`` the encoder's clips (LRCA), ``refine`` the sequence [tokens ; clips] with the
        tokens as its leading context (SORA), then ``enhance`` the clip memory (SGE)."""
        length = video.shape[1]
        src = torch.cat([video, text], dim=1)  # [B, L+N, d]
        pos = torch.cat([video_pos, torch.zeros_like(text)], dim=1)  # text positions are zeros (use_txt_pos off)
        mask = torch.cat([video_mask, text_mask], dim=1)  # [B, L+N]
        memory = self.encoder(src, pos, mask)
        clips, tokens = memory[:, :length], memory[:, length:]
        modules = self.part_modules()
        extras: dict[str, Any] = {}
        for module in modules:
            extras.update(module.relate(clips))
        if self.parts:
            n_tokens = tokens.shape[1]
            sequence = torch.cat([tokens, clips], dim=1)  # [B, N+L, d]: the tokens lead, as SORA's context
            sequence_mask = torch.cat([text_mask, video_mask], dim=1)
            sequence_pos = torch.cat([pos[:, length:], video_pos], dim=1)
            for module in modules:
                sequence = module.refine(sequence, sequence_mask, sequence_pos, extras, stats, context=n_tokens)
            tokens, clips = sequence[:, :n_tokens], sequence[:, n_tokens:]
        for module in modules:
            clips, enhanced = module.enhance(clips, video_mask, stats)
            extras.update(enhanced)
        return clips, tokens, extras

    # ----- stage 4 -------------------------------------------------------------------------------------
    def decode(
        self, memory: torch.Tensor, memory_pos: torch.Tensor, memory_mask: torch.Tensor, tokens: torch.Tensor
    ) -> dict[str, Any]:
        """DETR decoder + heads over memory [B, S, d]: the last layer's predictions plus ``aux_outputs``; with
        the contrastive alignment, the normalised projections of every layer's states and of the token memory
        ``tokens`` [B, N, d] (``proj_queries`` [B, Q, h] per layer, ``proj_txt_mem`` [B, N, h])."""
        hidden = self.decoder(self.queries.weight, memory, memory_pos, memory_mask)  # [l, B, Q, d]
        logits = in_float32(self.class_head, hidden)  # [l, B, Q, 2]
        spans = in_float32(self.span_head, hidden).sigmoid()  # [l, B, Q, 2]
        layers = [{"pred_logits": lg, "pred_spans": sp} for lg, sp in zip(logits, spans)]
        if self.contrastive_align:
            proj_queries = F.normalize(self.contrastive_query(hidden), dim=-1)  # [l, B, Q, h]
            proj_text = F.normalize(self.contrastive_text(tokens), dim=-1)  # [B, N, h]
            for layer, queries in zip(layers, proj_queries):
                layer.update(proj_queries=queries, proj_txt_mem=proj_text)
        return layers[-1] | {"aux_outputs": layers[:-1]}

    def score_saliency(self, clips: torch.Tensor) -> torch.Tensor:
        """s_i = w · m_i + b: clip memory [B, L, d] -> [B, L] float32."""
        return in_float32(self.saliency_head, clips).squeeze(-1)

    def forward(self, batch: GroundingBatch) -> dict[str, Any]:
        video_mask, text_mask = batch.video_mask, batch.query_mask
        video, text = self.project_inputs(batch.video_feats, batch.query_feats)
        video_pos = video_position_encoding(video_mask, self.hidden_dim).to(video.dtype)  # [B, L, d]
        stats = self.step_statistics()
        interacted, extras = self.interact(video, video_pos, video_mask, text, text_mask, stats)
        clips, tokens, encoded = self.encode_joint(interacted, video_pos, video_mask, text, text_mask, stats)
        extras.update(encoded)
        outputs = self.decode(
            torch.cat([clips, tokens], dim=1),
            torch.cat([video_pos, torch.zeros_like(tokens)], dim=1),
            torch.cat([video_mask, text_mask], dim=1),
            tokens,
        )
        outputs.update(extras)
        outputs["saliency_scores"] = self.rescore_saliency(self.score_saliency(clips), extras)
        outputs["video_mask"] = video_mask
        outputs["memory"] = clips
        for module in self.part_modules():
            outputs.update(module.outputs(clips, video_mask, batch, video))
        if stats is not None:
            outputs["diagnostics"] = self._diagnostics(stats)
        return outputs
