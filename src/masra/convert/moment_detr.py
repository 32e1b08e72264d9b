"""``masra convert moment-detr``: a Moment-DETR checkpoint (jayleicn/moment_detr ``model_*.ckpt``) -> a masra run.

masra's Moment-DETR backbone (masra.model.moment_detr) is Moment-DETR with its modules renamed, so every tensor
maps one to one (``RENAMES``). The config comes from the checkpoint's ``opt`` (masra.convert.anchor). Refused:
options masra does not implement (pre-norm, span_loss_type ce, text positions). Dropped, and reported: the text
position embedding, which Moment-DETR builds always and reads only with ``use_txt_pos``, and with the contrastive
alignment on, the clip-memory projection, whose output no loss reads.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from masra.config import Config
from masra.convert.anchor import MAX_WIDTH, Anchor, Converted, convert_checkpoint, load_anchor_checkpoint
from masra.convert.options import OptReader
from masra.convert.renames import INPUT_PROJECTION_RENAMES, encoder_layer_renames

# (pattern, replacement) applied in order to each Moment-DETR key; the first match wins.
RENAMES: list[tuple[str, str]] = [
    *INPUT_PROJECTION_RENAMES,
    *encoder_layer_renames(r"transformer\.encoder", "encoder"),
    (r"^transformer\.decoder\.layers\.(\d+)\.self_attn\.", r"decoder.layers.\1.self_attn."),
    (r"^transformer\.decoder\.layers\.(\d+)\.multihead_attn\.", r"decoder.layers.\1.cross_attn."),
    (r"^transformer\.decoder\.layers\.(\d+)\.(norm1|norm2)\.", r"decoder.layers.\1.\2."),
    (r"^transformer\.decoder\.layers\.(\d+)\.norm3\.", r"decoder.layers.\1.ffn.norm."),
    (r"^transformer\.decoder\.layers\.(\d+)\.(linear1|linear2)\.", r"decoder.layers.\1.ffn.\2."),
    (r"^transformer\.decoder\.norm\.", "decoder.norm."),
    (r"^query_embed\.", "queries."),
    (r"^span_embed\.", "span_head."),
    (r"^class_embed\.", "class_head."),
    (r"^saliency_proj\.", "saliency_head."),
    (r"^contrastive_align_projection_query\.", "contrastive_query."),
    (r"^contrastive_align_projection_txt\.", "contrastive_text."),
]

MIN_TEMPERATURE = 1e-6  # the alignment's logits are divided by it: a zero or negative one is refused


def _configure(cfg: Config, read: OptReader) -> None:
    cfg.model.backbone = "moment_detr"
    cfg.model.activation = "relu"  # moment_detr/transformer.py: the layers' default activation
    cfg.model.use_negative_pairs = False
    cfg.model.contrastive_align = read.flag("contrastive_align_loss")
    cfg.model.contrastive_dim = read.integer("contrastive_hdim", 1, MAX_WIDTH)
    cfg.loss.contrastive_align = read.number("contrastive_align_loss_coef", 0.0, math.inf)
    cfg.loss.contrastive_temperature = read.number("temperature", MIN_TEMPERATURE, math.inf)


ANCHOR = Anchor(
    name="Moment-DETR",
    format="moment-detr",
    renames=RENAMES,
    configure=_configure,
    unused_when_off={r"^txt_position_embed\.": "use_txt_pos"},
    never_used={r"^contrastive_align_projection_vid\.": "Moment-DETR's proj_vid_mem output is read by no loss"},
)


def load_moment_detr_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict, loaded with weights_only=True (argparse.Namespace allowed for ``opt``)."""
    return load_anchor_checkpoint(path, ANCHOR)


def convert_moment_detr(path: str | Path, encoder: str | None = None) -> Converted:
    """Map a Moment-DETR checkpoint onto masra's Moment-DETR backbone; every masra parameter must get a tensor."""
    return convert_checkpoint(path, ANCHOR, encoder)
