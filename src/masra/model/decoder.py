"""DAB-DETR-style moment decoder (as in QD-DETR): queries are learnable 2-d anchors (center, width).

Per layer: the anchor's sine embedding gives the query position (and, scaled, the positional half of the
cross-attention query); cross-attention compares [content ‖ position] per head, so content and position
match separately; after each layer an MLP refines the anchor in logit space.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from masra.model.dropout import Dropout
from masra.model.layers import MLP, FeedForward
from masra.model.position_encoding import anchor_sine_embedding
from masra.model.span_ops import inverse_sigmoid


def multi_head_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    nheads: int,
    key_padding: torch.Tensor | None,
    dropout_p: float,
) -> torch.Tensor:
    """Attention on already-projected inputs, split into heads along the channels.

    q [B, Q, Dk], k [B, S, Dk], v [B, S, Dv], key_padding [B, S] bool (True = pad) -> [B, Q, Dv].
    The scale is 1/sqrt(Dk / nheads): for the [content ‖ position] cross-attention that is the 2d-wide head.
    """
    batch, n_query, dk = q.shape
    n_key, dv = v.shape[1], v.shape[2]
    q = q.reshape(batch, n_query, nheads, dk // nheads).transpose(1, 2)  # [B, H, Q, Dk/H]
    k = k.reshape(batch, n_key, nheads, dk // nheads).transpose(1, 2)  # [B, H, S, Dk/H]
    v = v.reshape(batch, n_key, nheads, dv // nheads).transpose(1, 2)  # [B, H, S, Dv/H]
    mask = None if key_padding is None else ~key_padding[:, None, None, :]  # [B, 1, 1, S], True = attend
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)  # [B, H, Q, Dv/H]
    return out.transpose(1, 2).reshape(batch, n_query, dv)


class DecoderLayer(nn.Module):
    """Self-attention over queries, conditional cross-attention to the clips, FFN; all post-norm."""

    def __init__(
        self,
        d_model: int,
        nheads: int,
        dim_feedforward: int,
        dropout: float,
        activation: str,
        add_query_pos_to_content: bool,
    ) -> None:
        super().__init__()
        self.nheads = nheads
        self.attn_dropout = dropout
        # Self-attention: q = k = content + position.
        self.sa_qcontent_proj = nn.Linear(d_model, d_model)
        self.sa_qpos_proj = nn.Linear(d_model, d_model)
        self.sa_kcontent_proj = nn.Linear(d_model, d_model)
        self.sa_kpos_proj = nn.Linear(d_model, d_model)
        self.sa_v_proj = nn.Linear(d_model, d_model)
        self.sa_out_proj = nn.Linear(d_model, d_model)
        self.dropout1 = Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        # Cross-attention: per head q = [content ‖ anchor sine], k = [memory ‖ memory position].
        self.ca_qcontent_proj = nn.Linear(d_model, d_model)
        # Only the first layer also adds the positions to the content parts (DAB-DETR's keep_query_pos off).
        self.ca_qpos_proj = nn.Linear(d_model, d_model) if add_query_pos_to_content else None
        self.ca_kcontent_proj = nn.Linear(d_model, d_model)
        self.ca_kpos_proj = nn.Linear(d_model, d_model)
        self.ca_v_proj = nn.Linear(d_model, d_model)
        self.ca_qpos_sine_proj = nn.Linear(d_model, d_model)
        self.ca_out_proj = nn.Linear(d_model, d_model)
        self.dropout2 = Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, dim_feedforward, dropout, activation)

    def forward(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        memory_padding: torch.Tensor,
        query_pos: torch.Tensor,
        query_sine: torch.Tensor,
    ) -> torch.Tensor:
        """tgt [B, Q, d], memory [B, L, d], memory_pos [B, L, d], memory_padding [B, L] bool,
        query_pos [B, Q, d], query_sine [B, Q, d] -> [B, Q, d]."""
        batch, n_query, d = tgt.shape
        n_mem = memory.shape[1]
        heads = self.nheads
        dropout_p = self.attn_dropout if self.training else 0.0

        q = self.sa_qcontent_proj(tgt) + self.sa_qpos_proj(query_pos)
        k = self.sa_kcontent_proj(tgt) + self.sa_kpos_proj(query_pos)
        attended = multi_head_attention(q, k, self.sa_v_proj(tgt), heads, None, dropout_p)
        tgt = self.norm1(tgt + self.dropout1(self.sa_out_proj(attended)))

        q_content = self.ca_qcontent_proj(tgt)  # [B, Q, d]
        k_content = self.ca_kcontent_proj(memory)  # [B, L, d]
        k_pos = self.ca_kpos_proj(memory_pos)  # [B, L, d]
        if self.ca_qpos_proj is not None:
            q_content = q_content + self.ca_qpos_proj(query_pos)
            k_content = k_content + k_pos
        q_sine = self.ca_qpos_sine_proj(query_sine)  # [B, Q, d]
        q = torch.cat(
            [q_content.view(batch, n_query, heads, -1), q_sine.view(batch, n_query, heads, -1)], dim=-1
        ).reshape(batch, n_query, 2 * d)  # [B, Q, 2d], head h = [content_h ‖ sine_h]
        k = torch.cat(
            [k_content.view(batch, n_mem, heads, -1), k_pos.view(batch, n_mem, heads, -1)], dim=-1
        ).reshape(batch, n_mem, 2 * d)  # [B, L, 2d]
        attended = multi_head_attention(q, k, self.ca_v_proj(memory), heads, memory_padding, dropout_p)
        tgt = self.norm2(tgt + self.dropout2(self.ca_out_proj(attended)))
        return self.ffn(tgt)


class AnchorDecoder(nn.Module):
    """Decoder layers with anchor-driven query positions and iterative anchor refinement.

    Returns the normalised hidden states of every layer [layers, B, Q, d] and the anchor each layer
    took as input [layers, B, Q, 2]; layer l's span is sigmoid(span_head(h_l) + logit(anchor_l)).
    """

    def __init__(
        self,
        num_layers: int,
        d_model: int,
        nheads: int,
        dim_feedforward: int,
        dropout: float,
        activation: str,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.layers = nn.ModuleList(
            DecoderLayer(d_model, nheads, dim_feedforward, dropout, activation, add_query_pos_to_content=(i == 0))
            for i in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model)  # shared by all layers' outputs
        self.ref_point_head = MLP(d_model, d_model, d_model, 2)  # anchor sine -> query position
        self.query_scale = MLP(d_model, d_model, d_model, 2)  # content -> elementwise scale of the sine (layers >= 2)
        self.ref_anchor_head = MLP(d_model, d_model, 1, 2)  # content -> width modulation
        self.anchor_refine = MLP(d_model, d_model, 2, 3)  # content -> anchor update in logit space

    def forward(
        self,
        anchors: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        memory_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """anchors [B, Q, 2] in (0, 1), memory [B, L, d], memory_pos [B, L, d], memory_mask [B, L] float."""
        batch, n_query, _ = anchors.shape
        padding = ~memory_mask.bool()
        output = memory.new_zeros(batch, n_query, self.d_model)  # [B, Q, d], content starts empty
        hidden, layer_anchors = [], []
        stored = anchors  # the anchor this layer predicts relative to, with its graph
        for i, layer in enumerate(self.layers):
            layer_anchors.append(stored)
            sine = anchor_sine_embedding(anchors, self.d_model).to(memory.dtype)  # [B, Q, d]
            query_pos = self.ref_point_head(sine)  # [B, Q, d], from the unscaled sine
            if i > 0:
                sine = sine * self.query_scale(output)
            width_scale = self.ref_anchor_head(output).sigmoid() / anchors[..., 1:2]  # [B, Q, 1]
            sine = sine * width_scale
            output = layer(output, memory, memory_pos, padding, query_pos, sine)
            hidden.append(self.norm(output))
            if i < len(self.layers) - 1:
                # The next layer runs on a detached anchor; the stored one keeps its graph so that the
                # refinement MLP learns through the next layer's span loss.
                stored = (self.anchor_refine(output) + inverse_sigmoid(anchors)).sigmoid()  # [B, Q, 2]
                anchors = stored.detach()
        return torch.stack(hidden), torch.stack(layer_anchors)
