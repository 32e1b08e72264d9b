"""The CG-DETR backbone (``model.backbone: cg_detr``; Moon et al. 2024, "Correlation-guided query-dependency
calibration for video temporal grounding", wjun0830/CGDETR).

Stages:
1. ``project_inputs``: QD-DETR's projections, plus a learned token-type embedding (clips 1, query tokens 0).
2. ``encode_dummies``: self-attention over [dummy tokens ; query tokens] -> query-aware dummies D [B, nd, d].
3. ``interact``: QD-DETR's T2V layers with CG-DETR's adaptive cross-attention (:class:`AdaptiveCrossAttention`)
   over [D ; query tokens]: the dummies share each clip's softmax but add no value, so a clip unrelated to the
   query puts its attention on them. Returns the clips and the attention weights averaged over the layers.
4. ``saliency_token``: the video's mean clip plus a mix of learned prototypes chosen by the clips' similarity
   to them, weighted by each clip's attention on the query tokens; it runs through the T2V layers with no keys
   (the anchor's second T2V call: its attention reads nothing, only the output bias and the FFN act).
5. ``encode_temporal``: QD-DETR's encoder over [saliency token ; clips]; the encoded token is added to every
   clip's memory. ``decode`` and ``score_saliency``: QD-DETR's anchor decoder and heads.

Training only (``self.training`` and a batch with saliency labels), for CG-DETR's losses (masra.model.criterion,
``cg_detr_losses``): the negative pass (each video with the next sample's query, for the samples whose next one
comes from another video), a sentence token encoded with the query tokens and with the dummies, and a moment token
encoded with the clips inside and outside the ground-truth moments.

What CG-DETR builds and never uses is not built here (masra.convert.cg_detr drops it): the text position
embedding (read only with ``use_txt_pos``) and ``txt_proj_linear`` (never called). Its DropPath (a residual
branch dropped per sample) is masra's element-wise dropout here, as in every masra layer: a training-time
difference only, eval outputs are unaffected.

MASRA parts (docs/method.md, "Parts on each backbone"): DAI's codebook C_v joins the dummies as more keys of the
adaptive attention (no second attention is built), LRCA relates and SORA refines the encoder's [token ; clips],
SGE enhances the memory the heads read; ESTA and LRCA add outputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from masra.config import ModelConfig
from masra.data.batch import GroundingBatch
from masra.model.base_model import BaseGroundingModel, xavier_matrices
from masra.model.decoder import AnchorDecoder
from masra.model.dropout import dropout
from masra.model.encoder import TemporalEncoder
from masra.model.grounding import GroundingModel
from masra.model.layers import MLP
from masra.model.position_encoding import video_position_encoding
from masra.model.t2v_encoder import T2VEncoder

# CG-DETR builds its dummy and sentence encoders with 8 heads and dropout 0.1 whatever its options say.
AUXILIARY_ENCODER_HEADS = 8
AUXILIARY_ENCODER_DROPOUT = 0.1


class AdaptiveCrossAttention(nn.Module):
    """CG-DETR's T2V attention: no input projections (q = clip + position, k = key + its position, v = key), a
    softmax over all keys, but only the keys after the first ``absorbing`` ones (the dummies) add their values.

    Returns the output [B, L, d] and the head-averaged attention weights [B, L, S] (before dropout). With no keys
    (S = 0) the output is the output projection's bias, as in CG-DETR; that case computes no empty products (their
    zero-size reshapes are what onnxruntime refuses in an export: docs/deploy.md). CG-DETR also masks (padded clip,
    padded token) pairs; the key-padding mask already excludes them, so it alone gives the same result.
    """

    def __init__(self, d_model: int, nheads: int, dropout_p: float) -> None:
        super().__init__()
        self.nheads = nheads
        self.dropout = dropout_p
        self.out_proj = nn.Linear(d_model, d_model)
        nn.init.zeros_(self.out_proj.bias)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_mask: torch.Tensor,
        key_pos: torch.Tensor,
        absorbing: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """query [B, L, d], key / value / key_pos [B, S, d], key_mask [B, S] float (1 = valid)."""
        batch, length, width = query.shape
        if key.shape[1] == 0:  # the saliency token's pass: nothing to attend, the output is the bias
            return self.out_proj(torch.zeros_like(query)), query.new_zeros(batch, length, 0)
        heads = self.nheads
        head_dim = width // heads

        def split(x: torch.Tensor) -> torch.Tensor:  # [B, S, d] -> [B, H, S, dh]
            return x.reshape(batch, x.shape[1], heads, head_dim).transpose(1, 2)

        q = split(query * head_dim**-0.5)  # scaled before the product, as CG-DETR
        scores = q @ split(key + key_pos).transpose(-1, -2)  # [B, H, L, S]
        scores = scores.masked_fill(~key_mask.bool()[:, None, None, :], float("-inf"))
        weights = scores.softmax(dim=-1)
        dropped = dropout(weights, self.dropout, self.training)
        out = dropped[..., absorbing:] @ split(value)[:, :, absorbing:]  # [B, H, L, dh]
        out = out.transpose(1, 2).reshape(batch, length, width)
        return self.out_proj(out), weights.mean(1)


class CGDETR(BaseGroundingModel):
    """``forward(batch)`` returns QD-DETR's outputs (``pred_logits``, ``pred_spans``, ``aux_outputs``,
    ``saliency_scores``, ``video_mask``, ``memory``, ``global_token``) plus ``t2v_attention`` [B, L, nd+N] (the
    adaptive attention over [dummies ; tokens], averaged over the T2V layers), ``t2v_text_attention`` [B, L] (its
    mass on the valid query tokens, clamped to [0, 1]), ``dummy_tokens`` [B, nd, d] and ``prompt_tokens`` [P, d].
    Training adds ``negative_rows`` [B] bool with ``saliency_scores_neg`` and ``t2v_text_attention_neg`` [R, L]
    for its R true rows, ``moment_mask`` [B, L] bool, ``moment_token`` / ``non_moment_token`` /
    ``sentence_token`` / ``sentence_dummy_token`` [B, d], ``moment_text_similarity`` [B, L, nd+N] and
    ``moment_frames`` [B, L, d]; with the parts on, their outputs as on QD-DETR."""

    # The same anchor decoder, class / span heads and saliency score as QD-DETR.
    decode, _spans = GroundingModel.decode, GroundingModel._spans
    score_saliency, _saliency = GroundingModel.score_saliency, GroundingModel._saliency

    def __init__(
        self, cfg: ModelConfig, v_feat_dim: int, t_feat_dim: int, semantic_dim: int | None = None
    ) -> None:
        super().__init__(cfg, v_feat_dim, t_feat_dim, semantic_dim)
        d, own = cfg.hidden_dim, cfg.cg_detr
        self.num_dummies = own.num_dummies
        self.prompts = own.prompts
        self.use_negative_pairs = cfg.use_negative_pairs
        layer = (cfg.dim_feedforward, cfg.dropout, cfg.activation)
        self.moment_encoder = TemporalEncoder(own.moment_layers, d, cfg.nheads, *layer)
        self.t2v_encoder = T2VEncoder(
            partial(AdaptiveCrossAttention, d, cfg.nheads, cfg.dropout), cfg.t2v_layers, d, *layer
        )
        self.encoder = TemporalEncoder(cfg.enc_layers, d, cfg.nheads, *layer)
        self.decoder = AnchorDecoder(cfg.dec_layers, d, cfg.nheads, *layer)
        GroundingModel._init_transformer_weights(self)  # CG-DETR's transformer is initialised as QD-DETR's,
        xavier_matrices(self.moment_encoder)  # its moment encoder included

        self.anchors = nn.Embedding(cfg.num_queries, 2)  # (center, width) in logit space
        self.class_head = nn.Linear(d, 2)  # index 0 = foreground
        self.span_head = MLP(d, d, 2, 3)
        self.token_type = nn.Embedding(2, d)  # 0: query token, 1: clip
        nn.init.normal_(self.token_type.weight, std=0.02)
        self.saliency_proj1 = nn.Linear(d, d)
        self.saliency_proj2 = nn.Linear(d, d)
        self.prompt_tokens = nn.Parameter(torch.randn(own.prompt_bank, d))  # the saliency token's prototypes
        self.global_pos = nn.Parameter(torch.randn(1, d))  # the saliency token's position
        self.moment_token = nn.Parameter(torch.randn(d))
        self.moment_pos = nn.Parameter(torch.randn(d))
        self.dummy_tokens = nn.Parameter(torch.randn(own.num_dummies, d))
        self.dummy_pos = nn.Parameter(torch.randn(own.num_dummies, d))
        self.sentence_token = nn.Parameter(torch.randn(d))
        self.sentence_pos = nn.Parameter(torch.randn(d))
        auxiliary = (d, AUXILIARY_ENCODER_HEADS, cfg.dim_feedforward, AUXILIARY_ENCODER_DROPOUT, cfg.activation)
        self.dummy_encoder = TemporalEncoder(own.dummy_layers, *auxiliary)
        self.sentence_encoder = TemporalEncoder(own.sentence_layers, *auxiliary)
        self._build_part_modules(cfg)

    def _attach_t2v_attention(self, make_attention: Callable[[], nn.Module], cfg: ModelConfig) -> None:
        """CG-DETR's attention already decouples (the dummies absorb without adding values): a part that would
        replace it (DAI) brings its keys instead, through ``interaction_inputs``, and no attention is built."""

    # ----- stage 1 -------------------------------------------------------------------------------------
    def project_inputs(self, video_feats: torch.Tensor, query_feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """QD-DETR's projections + the token-type embeddings: video [B, L, d], text [B, N, d]."""
        video, text = super().project_inputs(video_feats, query_feats)
        return video + self.token_type.weight[1], text + self.token_type.weight[0]

    # ----- stage 2 -------------------------------------------------------------------------------------
    def encode_dummies(self, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """[B, N, d] query tokens -> the encoded dummies [B, nd, d]."""
        batch, nd = text.shape[0], self.num_dummies
        src = torch.cat([self.dummy_tokens.to(text.dtype).expand(batch, -1, -1), text], dim=1)
        pos = torch.cat([self.dummy_pos.to(text.dtype).expand(batch, -1, -1), torch.zeros_like(text)], dim=1)
        mask = torch.cat([text_mask.new_ones(batch, nd), text_mask], dim=1)
        return self.dummy_encoder(src, pos, mask)[:, :nd]

    # ----- stage 3 -------------------------------------------------------------------------------------
    def interact_with_dummies(
        self,
        video: torch.Tensor,
        video_pos: torch.Tensor,
        video_mask: torch.Tensor,
        keys: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        stats: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """The T2V layers over ``keys`` = (dummies [B, nd, d], query tokens [B, N, d], their mask [B, N]) ->
        (clips [B, L, d], attention over [dummies ; tokens] [B, L, nd+N] averaged over the layers, part outputs).

        The parts' interaction inputs (DAI's codebook C_v [B, K, d]) join the dummies as absorbing keys (no
        position, always valid); their relevance per layer is the attention mass on the query tokens."""
        dummies, text, text_mask = keys
        modules = self.part_modules()
        inputs: dict[str, Any] = {}
        for module in modules:
            inputs.update(module.interaction_inputs(video, video_mask, stats))
        absorbing = torch.cat([dummies, *inputs.values()], dim=1)  # [B, nd (+K), d]
        n_absorbing = absorbing.shape[1]
        key = torch.cat([absorbing, text], dim=1)
        batch = video.shape[0]
        dummy_pos = self.dummy_pos.to(key.dtype).expand(batch, -1, -1)
        key_pos = torch.cat([dummy_pos, key.new_zeros(batch, key.shape[1] - self.num_dummies, key.shape[2])], dim=1)
        key_mask = torch.cat([text_mask.new_ones(batch, n_absorbing), text_mask], dim=1)
        video, weights = self.t2v_encoder(video, video_pos, key, key_mask, key_pos=key_pos, absorbing=n_absorbing)
        attention = torch.stack(weights).mean(0)  # [B, L, nd (+K) + N]
        extras: dict[str, Any] = {}
        for module in modules:
            extras.update(module.after_interaction([w[..., n_absorbing:].sum(-1) for w in weights], video_mask, inputs, stats))
        attention = torch.cat([attention[..., : self.num_dummies], attention[..., n_absorbing:]], dim=-1)
        return video, attention, extras

    # ----- stage 4 -------------------------------------------------------------------------------------
    def saliency_token(
        self, video: torch.Tensor, video_mask: torch.Tensor, text_attention: torch.Tensor
    ) -> torch.Tensor:
        """The token the saliency head compares every clip with [B, d], from the projected clips [B, L, d]
        (before the T2V layers) and each clip's attention mass on the query tokens [B, L]."""
        valid = video_mask.to(video.dtype).unsqueeze(-1)  # [B, L, 1]
        context = ((video * valid).sum(1) / valid.sum(1)).detach()  # [B, d], the mean valid clip
        similarity = F.normalize(video - context.unsqueeze(1), dim=2) @ F.normalize(self.prompt_tokens, dim=1).T
        similarity = similarity.softmax(dim=-1)  # [B, L, P]
        importance = text_attention.detach() * video_mask  # [B, L]
        importance = importance / importance.sum(1, keepdim=True)
        weight = (similarity * importance.unsqueeze(-1)).sum(1)  # [B, P]: importance-weighted mean over clips
        top_weight, top_index = largest_first(weight, self.prompts)  # [B, k]
        token = (top_weight.unsqueeze(-1) * self.prompt_tokens[top_index]).sum(1) + context  # [B, d]
        no_keys = token.new_zeros(token.shape[0], 0, token.shape[1])
        pos = self.global_pos.to(token.dtype).expand(token.shape[0], 1, -1)
        token, _ = self.t2v_encoder(token.unsqueeze(1), pos, no_keys, no_keys[..., 0], key_pos=no_keys, absorbing=0)
        return token[:, 0]

    # ----- stage 5 -------------------------------------------------------------------------------------
    def encode_temporal(
        self,
        token: torch.Tensor,
        clips: torch.Tensor,
        video_pos: torch.Tensor,
        video_mask: torch.Tensor,
        stats: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Self-attention over [token ; clips] -> (clip memory + encoded token [B, L, d], encoded token [B, d],
        part outputs). The parts relate (LRCA) and refine (SORA) the encoder's output, SGE enhances the memory."""
        batch = clips.shape[0]
        src = torch.cat([token.unsqueeze(1), clips], dim=1)  # [B, 1+L, d]
        pos = torch.cat([self.global_pos.to(video_pos.dtype).expand(batch, 1, -1), video_pos], dim=1)
        mask = torch.cat([video_mask.new_ones(batch, 1), video_mask], dim=1)
        memory = self.encoder(src, pos, mask)
        modules = self.part_modules()
        extras: dict[str, Any] = {}
        for module in modules:
            extras.update(module.relate(memory[:, 1:]))
        for module in modules:
            memory = module.refine(memory, mask, pos, extras, stats, context=1)
        global_token = memory[:, 0]
        clips = memory[:, 1:] + global_token.unsqueeze(1)
        for module in modules:
            clips, enhanced = module.enhance(clips, video_mask, stats)
            extras.update(enhanced)
        return clips, global_token, extras

    def encode(
        self,
        video: torch.Tensor,
        video_pos: torch.Tensor,
        video_mask: torch.Tensor,
        keys: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        stats: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Stages 3 to 5 -> (memory [B, L, d], global token [B, d], attention [B, L, nd+N], part outputs)."""
        clips, attention, extras = self.interact_with_dummies(video, video_pos, video_mask, keys, stats)
        token = self.saliency_token(video, video_mask, attention[..., self.num_dummies :].sum(-1))
        memory, global_token, encoded = self.encode_temporal(token, clips, video_pos, video_mask, stats)
        return memory, global_token, attention, extras | encoded

    def text_attention(self, attention: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """A clip's attention mass on the valid query tokens, clamped to [0, 1]: [B, L, nd+N] -> [B, L]."""
        return (attention[..., self.num_dummies :] * text_mask.unsqueeze(1)).sum(2).clamp(0, 1)

    # ----- training-only passes ---------------------------------------------------------------------------
    def negative_pass(
        self, batch: GroundingBatch, video: torch.Tensor, video_pos: torch.Tensor, keys: tuple[torch.Tensor, ...]
    ) -> dict[str, torch.Tensor]:
        """Each video with the next sample's query (and its dummies), for the samples whose next one comes from
        another source video (``negative_rows``; CG-DETR's real negatives)."""
        sources = [source_video(str(meta.get("vid", i))) for i, meta in enumerate(batch.meta)]
        rows = torch.tensor([a != b for a, b in zip(sources, sources[1:] + sources[:1])], device=video.device)
        outputs: dict[str, torch.Tensor] = {"negative_rows": rows}
        if not rows.any():
            return outputs
        dummies, text, text_mask = (key.roll(-1, dims=0)[rows] for key in keys)
        video_mask = batch.video_mask[rows]
        memory, global_token, attention, extras = self.encode(
            video[rows], video_pos[rows], video_mask, (dummies, text, text_mask)
        )
        outputs["saliency_scores_neg"] = self.rescore_saliency(self.score_saliency(memory, global_token), extras)
        outputs["t2v_text_attention_neg"] = self.text_attention(attention, text_mask)
        return outputs

    def alignment_pass(
        self,
        batch: GroundingBatch,
        video: torch.Tensor,
        video_pos: torch.Tensor,
        text: torch.Tensor,
        dummies: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """The moment / non-moment tokens encoded with the clips inside / outside the ground-truth moments, and
        the sentence token encoded with the query tokens and with the dummies (CG-DETR's alignment losses)."""
        b = video.shape[0]
        video_mask, text_mask = batch.video_mask, batch.query_mask
        moment = batch.saliency_all_labels.clamp(0, 1).bool()  # [B, L]
        one = video_mask.new_ones(b, 1)

        def encode_with(encoder: TemporalEncoder, token: torch.Tensor, token_pos: torch.Tensor, rows: torch.Tensor,
                        rows_pos: torch.Tensor, rows_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            src = torch.cat([token.to(rows.dtype).expand(b, 1, -1), rows], dim=1)
            pos = torch.cat([token_pos.to(rows.dtype).expand(b, 1, -1), rows_pos], dim=1)
            memory = encoder(src, pos, torch.cat([one, rows_mask], dim=1))
            return memory[:, 0], memory[:, 1:]

        inside = video_mask * moment
        outside = video_mask * ~moment
        moment_token, moment_frames = encode_with(self.moment_encoder, self.moment_token, self.moment_pos, video,
                                                  video_pos, inside)
        non_moment_token, non_moment_frames = encode_with(self.moment_encoder, self.moment_token, self.moment_pos,
                                                          video, video_pos, outside)
        sentence, words = encode_with(self.sentence_encoder, self.sentence_token, self.sentence_pos, text,
                                      torch.zeros_like(text), text_mask)
        sentence_dummy, dummy_words = encode_with(
            self.sentence_encoder, self.sentence_token, self.sentence_pos, dummies,
            self.dummy_pos.to(dummies.dtype).expand(b, -1, -1), text_mask.new_ones(b, self.num_dummies))
        words = torch.cat([dummy_words, words], dim=1)  # [B, nd+N, d]
        frames = torch.where(moment.unsqueeze(-1), moment_frames, non_moment_frames)
        return {
            "moment_mask": moment,
            "moment_token": moment_token,
            "non_moment_token": non_moment_token,
            "sentence_token": sentence,
            "sentence_dummy_token": sentence_dummy,
            "moment_text_similarity": moment_frames @ words.transpose(1, 2),  # [B, L, nd+N]
            "moment_frames": frames,
        }

    def forward(self, batch: GroundingBatch) -> dict[str, Any]:
        video_mask, text_mask = batch.video_mask, batch.query_mask
        video, text = self.project_inputs(batch.video_feats, batch.query_feats)
        video_pos = video_position_encoding(video_mask, self.hidden_dim).to(video.dtype)  # [B, L, d]
        stats = self.step_statistics()
        dummies = self.encode_dummies(text, text_mask)
        keys = (dummies, text, text_mask)
        memory, global_token, attention, extras = self.encode(video, video_pos, video_mask, keys, stats)
        outputs = self.decode(memory, video_pos, video_mask)
        outputs.update(extras)
        outputs.update(
            saliency_scores=self.rescore_saliency(self.score_saliency(memory, global_token), extras),
            video_mask=video_mask,
            memory=memory,
            global_token=global_token,
            t2v_attention=attention,
            t2v_text_attention=self.text_attention(attention, text_mask),
            dummy_tokens=dummies,
            prompt_tokens=self.prompt_tokens,
        )
        if self.training and batch.saliency_all_labels is not None:
            if self.use_negative_pairs:
                outputs.update(self.negative_pass(batch, video, video_pos, keys))
            outputs.update(self.alignment_pass(batch, video, video_pos, text, dummies))
        for module in self.part_modules():
            outputs.update(module.outputs(memory, video_mask, batch, video))
        if stats is not None:
            outputs["diagnostics"] = self._diagnostics(stats)
        return outputs


def largest_first(values: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``values.topk(k, dim=1)`` of [B, P] -> ([B, k], [B, k]), with ties going to the lowest index: torch's topk
    breaks them in any order (a one-clip video gives every CG-DETR prototype one weight), ONNX's TopK and argmax
    by index, so the torch model and its export pick the same ones."""
    indices = []
    remaining = values
    for _ in range(k):
        index = remaining.argmax(dim=1, keepdim=True)  # the first of the largest
        indices.append(index)
        remaining = remaining.scatter(1, index, float("-inf"))
    index = torch.cat(indices, dim=1)
    return values.gather(1, index), index


def source_video(vid: str) -> str:
    """The video a QVHighlights clip window comes from: ``<video>_<start>_<end>`` -> ``<video>`` (CG-DETR's
    rule for its real negatives); any other vid is its own source."""
    head, *times = vid.rsplit("_", 2)
    if len(times) == 2 and all(_is_number(t) for t in times):
        return head
    return vid


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return math.isfinite(float(text))
