"""``masra convert qd-detr``: a QD-DETR checkpoint (wjun0830/QD-DETR ``model_*.ckpt``) -> a masra run folder.

The masra QD-DETR backbone is QD-DETR with its modules renamed, so every tensor maps one to one (``RENAMES``).
The config comes from the checkpoint's ``opt`` (masra.convert.anchor). Refused: options masra does not
implement (pre-norm, audio, span_loss_type ce, text positions). Dropped, and reported: tensors that QD-DETR's
forward never uses with the checkpoint's options (the text position embedding when ``use_txt_pos`` is off, the
contrastive-alignment heads when that loss is off).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from masra.config import Config
from masra.convert.anchor import Anchor, Converted, convert_checkpoint, load_anchor_checkpoint
from masra.convert.options import OptReader
from masra.convert.renames import INPUT_PROJECTION_RENAMES, QD_DETR_DECODER_AND_HEAD_RENAMES, encoder_layer_renames

# (pattern, replacement) applied in order to each QD-DETR key; the first match wins.
RENAMES: list[tuple[str, str]] = [
    (r"^global_rep_token$", "global_token"),
    (r"^global_rep_pos$", "global_pos"),
    *INPUT_PROJECTION_RENAMES,
    (r"^transformer\.t2v_encoder\.layers\.(\d+)\.self_attn\.", r"t2v_encoder.layers.\1.cross_attn.attn."),
    (r"^transformer\.t2v_encoder\.layers\.(\d+)\.norm1\.", r"t2v_encoder.layers.\1.norm."),
    (r"^transformer\.t2v_encoder\.layers\.(\d+)\.norm2\.", r"t2v_encoder.layers.\1.ffn.norm."),
    (r"^transformer\.t2v_encoder\.layers\.(\d+)\.(linear1|linear2|activation)\.", r"t2v_encoder.layers.\1.ffn.\2."),
    *encoder_layer_renames(r"transformer\.encoder", "encoder"),
    *QD_DETR_DECODER_AND_HEAD_RENAMES,
]


def _configure(cfg: Config, read: OptReader) -> None:
    cfg.model.backbone = "qd_detr"
    cfg.model.t2v_layers = cfg.model.enc_layers  # qd_detr/transformer.py: as many T2V layers as encoder layers
    cfg.model.activation = "prelu"  # qd_detr/transformer.py build_transformer


ANCHOR = Anchor(
    name="QD-DETR",
    format="qd-detr",
    renames=RENAMES,
    configure=_configure,
    unused_when_off={r"^txt_position_embed\.": "use_txt_pos", r"^contrastive_align_projection_": "contrastive_align_loss"},
)


def load_qd_detr_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict, loaded with weights_only=True (argparse.Namespace allowed for ``opt``)."""
    return load_anchor_checkpoint(path, ANCHOR)


def convert_qd_detr(path: str | Path, encoder: str | None = None) -> Converted:
    """Map a QD-DETR checkpoint onto masra's QD-DETR backbone; every masra parameter must receive a tensor."""
    return convert_checkpoint(path, ANCHOR, encoder)
