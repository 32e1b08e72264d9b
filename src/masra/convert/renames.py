"""Rename rules the anchors share: QD-DETR and CG-DETR grew out of Moment-DETR's code and kept its names for the
input projections and the post-norm encoder layers, and CG-DETR kept QD-DETR's decoder and heads.

Each rule is (pattern, replacement) on a checkpoint key; an anchor's ``RENAMES`` lists its own rules and these,
and the first rule that matches a key wins (masra.convert.anchor.rename_key).
"""

from __future__ import annotations

# The anchors' LinearLayer (LayerNorm, dropout, Linear) -> masra's Sequential (0 = LayerNorm, 2 = Linear).
INPUT_PROJECTION_RENAMES: list[tuple[str, str]] = [
    (r"^input_vid_proj\.(\d+)\.LayerNorm\.", r"video_proj.\1.0."),
    (r"^input_vid_proj\.(\d+)\.net\.1\.", r"video_proj.\1.2."),
    (r"^input_txt_proj\.(\d+)\.LayerNorm\.", r"text_proj.\1.0."),
    (r"^input_txt_proj\.(\d+)\.net\.1\.", r"text_proj.\1.2."),
]

# QD-DETR's decoder (anchor refinement, the attention output projections of its own layers) and prediction
# heads; CG-DETR keeps every name.
QD_DETR_DECODER_AND_HEAD_RENAMES: list[tuple[str, str]] = [
    (r"^transformer\.decoder\.layers\.(\d+)\.self_attn\.out_proj\.", r"decoder.layers.\1.sa_out_proj."),
    (r"^transformer\.decoder\.layers\.(\d+)\.cross_attn\.out_proj\.", r"decoder.layers.\1.ca_out_proj."),
    (r"^transformer\.decoder\.layers\.(\d+)\.norm3\.", r"decoder.layers.\1.ffn.norm."),
    (r"^transformer\.decoder\.layers\.(\d+)\.(linear1|linear2|activation)\.", r"decoder.layers.\1.ffn.\2."),
    (r"^transformer\.decoder\.bbox_embed\.", "decoder.anchor_refine."),
    (r"^transformer\.decoder\.", "decoder."),
    (r"^span_embed\.", "span_head."),
    (r"^class_embed\.", "class_head."),
    (r"^query_embed\.", "anchors."),
    (r"^(saliency_proj[12]\.)", r"\1"),
]


def encoder_layer_renames(anchor_prefix: str, masra_prefix: str) -> list[tuple[str, str]]:
    """A post-norm encoder's layers under the regex ``anchor_prefix`` (self_attn, norm1, the FFN's linear1 /
    linear2 / activation and its norm2) -> masra's TemporalEncoder layers under ``masra_prefix``."""
    return [
        (rf"^{anchor_prefix}\.layers\.(\d+)\.self_attn\.", rf"{masra_prefix}.layers.\1.self_attn."),
        (rf"^{anchor_prefix}\.layers\.(\d+)\.norm1\.", rf"{masra_prefix}.layers.\1.norm."),
        (rf"^{anchor_prefix}\.layers\.(\d+)\.norm2\.", rf"{masra_prefix}.layers.\1.ffn.norm."),
        (rf"^{anchor_prefix}\.layers\.(\d+)\.(linear1|linear2|activation)\.", rf"{masra_prefix}.layers.\1.ffn.\2."),
    ]
