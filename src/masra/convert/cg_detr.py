"""``masra convert cg-detr``: a CG-DETR checkpoint (wjun0830/CGDETR ``model_*.ckpt``) -> a masra run folder.

masra's CG-DETR backbone (masra.model.cg_detr) is CG-DETR with its modules renamed, so every tensor maps one to
one (``RENAMES``). The config comes from the checkpoint's ``opt`` (masra.convert.anchor), CG-DETR's own options
into ``model.cg_detr`` and its loss weights. Refused: options masra does not implement (pre-norm, audio,
span_loss_type ce, text positions) and the contrastive alignment, whose text memory is empty in CG-DETR (its
encoder output holds clips only). Dropped, and reported: the text position embedding (read only with
``use_txt_pos``) and ``txt_proj_linear`` (built, never called).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from masra.config import Config
from masra.convert.anchor import MAX_LAYERS, MAX_QUERIES, Anchor, Converted, convert_checkpoint, load_anchor_checkpoint
from masra.convert.options import OptReader
from masra.convert.renames import INPUT_PROJECTION_RENAMES, QD_DETR_DECODER_AND_HEAD_RENAMES, encoder_layer_renames

# CG-DETR's encoders (nn.MultiheadAttention + post-norm FFN) -> masra's TemporalEncoder layers.
_ENCODERS = {
    r"transformer\.mcls_encoder": "moment_encoder",
    r"transformer\.encoder": "encoder",
    r"txtproj_encoder": "dummy_encoder",
    r"scls_encoder": "sentence_encoder",
}
# (pattern, replacement) applied in order to each CG-DETR key; the first match wins.
RENAMES: list[tuple[str, str]] = [
    (r"^global_rep_token$", "prompt_tokens"),
    (r"^global_rep_pos$", "global_pos"),
    (r"^moment_rep_token$", "moment_token"),
    (r"^moment_rep_pos$", "moment_pos"),
    (r"^dummy_rep_token$", "dummy_tokens"),
    (r"^dummy_rep_pos$", "dummy_pos"),
    (r"^sent_rep_token$", "sentence_token"),
    (r"^sent_rep_pos$", "sentence_pos"),
    (r"^token_type_embeddings\.", "token_type."),
    *INPUT_PROJECTION_RENAMES,
    *[rule for old, new in _ENCODERS.items() for rule in encoder_layer_renames(old, new)],
    (r"^transformer\.t2v_encoder\.layers\.(\d+)\.self_attn\.", r"t2v_encoder.layers.\1.cross_attn."),
    (r"^transformer\.t2v_encoder\.layers\.(\d+)\.norm1\.", r"t2v_encoder.layers.\1.norm."),
    (r"^transformer\.t2v_encoder\.layers\.(\d+)\.norm2\.", r"t2v_encoder.layers.\1.ffn.norm."),
    (r"^transformer\.t2v_encoder\.layers\.(\d+)\.(linear1|linear2|activation)\.", r"t2v_encoder.layers.\1.ffn.\2."),
    *QD_DETR_DECODER_AND_HEAD_RENAMES,
]


def _configure(cfg: Config, read: OptReader) -> None:
    model, own, loss = cfg.model, cfg.model.cg_detr, cfg.loss
    model.backbone = "cg_detr"
    model.activation = "prelu"  # cg_detr/transformer.py build_transformer, and its dummy / sentence encoders
    model.use_negative_pairs = True  # CG-DETR's training forward always pairs each video with the next query
    model.t2v_layers = read.integer("t2v_layers", 1, MAX_LAYERS)
    own.num_dummies = read.integer("num_dummies", 1, MAX_QUERIES)
    own.dummy_layers = read.integer("dummy_layers", 1, MAX_LAYERS)
    own.sentence_layers = read.integer("sent_layers", 1, MAX_LAYERS)
    own.moment_layers = read.integer("moment_layers", 1, MAX_LAYERS)
    own.prompt_bank = read.integer("total_prompts", 1, MAX_QUERIES)
    own.prompts = read.integer("num_prompts", 1, own.prompt_bank)
    weight = lambda name: read.number(name, 0.0, math.inf)  # noqa: E731 - a loss weight: finite, >= 0
    loss.saliency_attention, loss.moment_sentence = weight("lw_wattn"), weight("lw_ms_align")
    loss.distill = loss.orthogonal_dummy = weight("lw_distill")  # CG-DETR weights both with lw_distill
    cfg.eval.clamp_to_duration = True  # cg_detr/inference.py clamps every window to [0, duration]
    if cfg.data.dataset == "youtube_highlights":
        loss.negative_pair = 0.0  # cg_detr/model.py multiplies both negative-pair terms by 0 for youtube_uni


ANCHOR = Anchor(
    name="CG-DETR",
    format="cg-detr",
    renames=RENAMES,
    configure=_configure,
    unused_when_off={r"^txt_position_embed\.": "use_txt_pos"},
    never_used={r"^txt_proj_linear\.": "CG-DETR builds txt_proj_linear and never calls it"},
    unsupported={"contrastive_align_loss": (False, "contrastive alignment losses (CG-DETR's text memory is empty)")},
)


def load_cg_detr_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict, loaded with weights_only=True (argparse.Namespace allowed for ``opt``)."""
    return load_anchor_checkpoint(path, ANCHOR)


def convert_cg_detr(path: str | Path, encoder: str | None = None) -> Converted:
    """Map a CG-DETR checkpoint onto masra's CG-DETR backbone; every masra parameter must receive a tensor."""
    return convert_checkpoint(path, ANCHOR, encoder)
