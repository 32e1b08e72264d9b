"""The QD-DETR backbone (``model.backbone: qd_detr``, the default): its forward split into named stages.

Stages (each a method, so MASRA parts plug in behind their switches):
1. ``project_inputs``: LN -> Dropout -> Linear (-> ReLU) stacks for clips and query tokens.
2. ``interact``: text-to-video cross-attention encoder (the attention module is replaceable).
3. ``encode_temporal``: self-attention over [global token; clips] -> global token g' and clip memory.
4. ``decode``: anchor decoder + class / span heads; ``score_saliency``: <W1 m_i, W2 g'> / sqrt(d).

MASRA parts (``masra.model.parts``), each behind its switch ``model.<part>.enabled`` (all off = exactly the
baseline, docs/method.md), plug into these stages through their hooks (masra.model.parts.base): DAI replaces
the T2V cross-attention (stage 2), LRCA projects the encoder's clips, SORA adds a relational layer after the
temporal encoder and SGE enhances the clip memory (stage 3); ESTA and LRCA add outputs for their losses.
"""

from __future__ import annotations

import math
from functools import partial
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from masra.config import ModelConfig
from masra.data.batch import GroundingBatch
from masra.errors import MasraError
from masra.model.base_model import BaseGroundingModel, xavier_matrices
from masra.model.decoder import AnchorDecoder
from masra.model.encoder import TemporalEncoder
from masra.model.layers import MLP, in_float32
from masra.model.position_encoding import video_position_encoding
from masra.model.span_ops import inverse_sigmoid
from masra.model.t2v_encoder import T2VEncoder, TextCrossAttention


class GroundingModel(BaseGroundingModel):
    """Moment retrieval + highlight detection from clip features and query-token features.

    ``forward(batch)`` returns ``pred_logits`` [B, Q, 2] (class 0 = foreground), ``pred_spans`` [B, Q, 2]
    (center, width in [0, 1] of the padded length L), ``saliency_scores`` [B, L], ``saliency_scores_neg``
    [B, L] (training with negative pairs only), ``aux_outputs`` (one dict per earlier decoder layer),
    ``video_mask`` [B, L], ``memory`` [B, L, d] (clip memory after the temporal encoder) and
    ``global_token`` [B, d]. Enabled MASRA parts add: ``dai_relevance`` [B, L] (mean over T2V layers), ``dai_relevance_layers``
    [B, layers, L] (and ``dai_relevance_layers_neg`` for the negative pairs), ``dai_codebook`` [B, K, d]
    (C_v), ``dai_codebook_entries`` [K, d] (C); ``sge_semantics`` [B, L, Ds]; ``lrca_video_proj`` [B, L, P]
    (the relation features SORA uses) and ``lrca_video_temperature``; ``esta_*`` (training, or any batch with
    priors). In training mode ``diagnostics`` holds one detached scalar per monitored quantity (gates, β,
    attention shares, temperatures; docs/method.md). ``semantic_dim`` (Ds, the prior text dimension) is
    needed by SGE and ESTA only (measured from the prior files, stored in the checkpoint's ``ModelDims``).
    """

    def __init__(
        self, cfg: ModelConfig, v_feat_dim: int, t_feat_dim: int, semantic_dim: int | None = None
    ) -> None:
        super().__init__(cfg, v_feat_dim, t_feat_dim, semantic_dim)
        d = cfg.hidden_dim
        if cfg.encoder_window < 0:
            raise MasraError(f"must be 0 (full attention) or a positive clip count, got {cfg.encoder_window}",
                             field="model.encoder_window")
        self.use_negative_pairs = cfg.use_negative_pairs
        self.t2v_encoder = T2VEncoder(
            partial(TextCrossAttention, d, cfg.nheads, cfg.dropout),
            cfg.t2v_layers,
            d,
            cfg.dim_feedforward,
            cfg.dropout,
            cfg.activation,
        )
        self.encoder = TemporalEncoder(
            cfg.enc_layers, d, cfg.nheads, cfg.dim_feedforward, cfg.dropout, cfg.activation, cfg.encoder_window
        )
        self.decoder = AnchorDecoder(cfg.dec_layers, d, cfg.nheads, cfg.dim_feedforward, cfg.dropout, cfg.activation)
        self._init_transformer_weights()

        self.global_token = nn.Parameter(torch.randn(d))  # g, prepended to the clips
        self.global_pos = nn.Parameter(torch.randn(d))  # its learned position
        self.anchors = nn.Embedding(cfg.num_queries, 2)  # (center, width) in logit space
        self.class_head = nn.Linear(d, 2)  # index 0 = foreground
        self.span_head = MLP(d, d, 2, 3)
        self.saliency_proj1 = nn.Linear(d, d)
        self.saliency_proj2 = nn.Linear(d, d)
        self._build_part_modules(cfg)

    def _attach_t2v_attention(self, make_attention: Callable[[], nn.Module], cfg: ModelConfig) -> None:
        """The part's attention swapped into every T2V layer: the baseline's attention was built and initialised
        first, as without the part, then discarded."""
        for layer in self.t2v_encoder.layers:
            layer.cross_attn = make_attention()
            xavier_matrices(layer.cross_attn)

    def _init_transformer_weights(self) -> None:
        """QD-DETR's initialisation: Xavier-uniform for every matrix of the T2V encoder, encoder and decoder,
        zero bias on the decoder's attention output projections. (QD-DETR zero-initialises the anchor
        refinement MLP's last layer and then overwrites its weight with this same Xavier pass; we keep the
        effective result: Xavier weight, zero bias.)"""
        for module in (self.t2v_encoder, self.encoder, self.decoder):
            xavier_matrices(module)
        for layer in self.decoder.layers:
            nn.init.zeros_(layer.sa_out_proj.bias)
            nn.init.zeros_(layer.ca_out_proj.bias)
        nn.init.zeros_(self.decoder.anchor_refine.layers[-1].bias)

    # ----- stage 1: project_inputs (BaseGroundingModel) ----------------------------------------------

    # ----- stage 2: interact (BaseGroundingModel), through the T2V encoder ------------------------------
    # ----- stage 3 -------------------------------------------------------------------------------------
    def encode_temporal(
        self,
        video: torch.Tensor,
        video_pos: torch.Tensor,
        video_mask: torch.Tensor,
        stats: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Self-attention over [g; clips] -> (clip memory [B, L, d], global token g' [B, d], part outputs).

        The parts ``relate`` the encoder's clips first (LRCA: P·h, whose cosines LRCA aligns with the caption
        relations and SORA builds its first-order relation from), then ``refine`` the sequence (SORA)."""
        batch = video.shape[0]
        token = self.global_token.to(video.dtype).expand(batch, 1, -1)  # [B, 1, d]
        src = torch.cat([token, video], dim=1)  # [B, 1+L, d]
        pos = torch.cat([self.global_pos.expand(batch, 1, -1).to(video_pos.dtype), video_pos], dim=1)
        mask = torch.cat([video_mask.new_ones(batch, 1), video_mask], dim=1)  # [B, 1+L]
        memory = self.encoder(src, pos, mask)
        modules = self.part_modules()
        extras: dict[str, Any] = {}
        for module in modules:
            extras.update(module.relate(memory[:, 1:]))
        for module in modules:
            memory = module.refine(memory, mask, pos, extras, stats, context=1)  # the global token
        return memory[:, 1:], memory[:, 0], extras

    def encode(
        self,
        video: torch.Tensor,
        video_pos: torch.Tensor,
        video_mask: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        stats: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Stages 2 + 3: projected clips and text -> (clip memory [B, L, d], global token [B, d], part outputs).

        ``stats`` (a dict, or None) receives the parts' diagnostics of this pass."""
        video, extras = self.interact(video, video_pos, video_mask, text, text_mask, stats)
        memory, global_token, relation = self.encode_temporal(video, video_pos, video_mask, stats)
        extras.update(relation)
        for module in self.part_modules():
            memory, enhanced = module.enhance(memory, video_mask, stats)
            extras.update(enhanced)
        return memory, global_token, extras

    # ----- stage 4 -------------------------------------------------------------------------------------
    def decode(self, memory: torch.Tensor, video_pos: torch.Tensor, video_mask: torch.Tensor) -> dict[str, Any]:
        """Anchor decoder + heads: predictions of the last layer plus ``aux_outputs`` for the earlier ones."""
        batch = memory.shape[0]
        anchors = self.anchors.weight.sigmoid().unsqueeze(0).expand(batch, -1, -1)  # [B, Q, 2]
        hidden, layer_anchors = self.decoder(anchors, memory, video_pos, video_mask)  # [l, B, Q, d], [l, B, Q, 2]
        logits = in_float32(self.class_head, hidden)  # [l, B, Q, 2]
        spans = in_float32(self._spans, hidden, layer_anchors)  # [l, B, Q, 2]
        aux = [{"pred_logits": lg, "pred_spans": sp} for lg, sp in zip(logits[:-1], spans[:-1])]
        return {"pred_logits": logits[-1], "pred_spans": spans[-1], "aux_outputs": aux}

    def _spans(self, hidden: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """Each layer's span relative to the anchor it took: hidden [l, B, Q, d], anchors [l, B, Q, 2] -> [l, B, Q, 2]."""
        return (self.span_head(hidden) + inverse_sigmoid(anchors)).sigmoid()

    def score_saliency(self, memory: torch.Tensor, global_token: torch.Tensor) -> torch.Tensor:
        """s_i = <W1 m_i, W2 g'> / sqrt(d): memory [B, L, d], global_token [B, d] -> [B, L] float32."""
        return in_float32(self._saliency, memory, global_token)

    def _saliency(self, memory: torch.Tensor, global_token: torch.Tensor) -> torch.Tensor:
        clips = self.saliency_proj1(memory)  # [B, L, d]
        query = self.saliency_proj2(global_token).unsqueeze(1)  # [B, 1, d]
        return (clips * query).sum(-1) / math.sqrt(self.hidden_dim)

    def forward(self, batch: GroundingBatch) -> dict[str, Any]:
        video_mask = batch.video_mask
        text_mask = batch.query_mask
        video, text = self.project_inputs(batch.video_feats, batch.query_feats)
        video_pos = video_position_encoding(video_mask, self.hidden_dim).to(video.dtype)  # [B, L, d]

        # Diagnostics of this training step (with negative pairs: over the positive and the negative pairs).
        stats = self.step_statistics()
        negative_pairs = self.training and self.use_negative_pairs
        if negative_pairs:
            # Negative pairs: every video with the next sample's query (the last gets the first), encoded in
            # the same call as the positive pairs (one pass over 2B samples).
            n = video.shape[0]
            memory, global_token, extras = self.encode(
                video.repeat(2, 1, 1),
                video_pos.repeat(2, 1, 1),
                video_mask.repeat(2, 1),
                torch.cat([text, text.roll(-1, dims=0)]),
                torch.cat([text_mask, text_mask.roll(-1, dims=0)]),
                stats,
            )  # [2B, ...]: positives first
            saliency = self.rescore_saliency(self.score_saliency(memory, global_token), extras)  # [2B, L]
            memory, global_token = memory[:n], global_token[:n]
            negatives = {
                f"{key}_neg": extras[key][n:] for part in self.parts for key in part.negative_pass_outputs if key in extras
            }
            extras = {key: value[:n] for key, value in extras.items()} | negatives
        else:
            memory, global_token, extras = self.encode(video, video_pos, video_mask, text, text_mask, stats)
            saliency = self.rescore_saliency(self.score_saliency(memory, global_token), extras)  # [B, L]
        outputs = self.decode(memory, video_pos, video_mask)
        outputs.update(extras)
        # memory.shape[0], not len(memory): len() fixes the batch size of an exported graph (masra export).
        outputs["saliency_scores"] = saliency[: memory.shape[0]]
        if negative_pairs:
            outputs["saliency_scores_neg"] = saliency[memory.shape[0] :]
        outputs["video_mask"] = video_mask
        outputs["memory"] = memory
        outputs["global_token"] = global_token
        for module in self.part_modules():
            outputs.update(module.outputs(memory, video_mask, batch, video))
        if stats is not None:
            outputs["diagnostics"] = self._diagnostics(stats)
        return outputs
