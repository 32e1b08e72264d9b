"""``masra convert qd-detr``: a QD-DETR checkpoint (wjun0830/QD-DETR ``model_*.ckpt``) -> a masra run folder.

The masra baseline is QD-DETR with its modules renamed, so every tensor maps one to one (``RENAMES``). The
config comes from the checkpoint's ``opt``: widths, layers, queries, dropout, feature dims, clip length,
TEF (``ctx_mode``), normalisation, lengths, loss weights and the evaluation's NMS. Refused: options masra
does not implement (pre-norm, audio, span_loss_type ce, text positions). Dropped, and reported: tensors
that QD-DETR's forward never uses with the checkpoint's options (the text position embedding when
``use_txt_pos`` is off, the contrastive-alignment heads when that loss is off).

The checkpoint is read with ``torch.load(weights_only=True)``, allowing only ``argparse.Namespace`` (its
``opt``) besides tensors and plain containers.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from masra.config import Config, load_config, packaged_configs, validate_config
from masra.errors import MasraError

# (pattern, replacement) applied in order to each QD-DETR key; the first match wins.
RENAMES: list[tuple[str, str]] = [
    (r"^global_rep_token$", "global_token"),
    (r"^global_rep_pos$", "global_pos"),
    (r"^input_vid_proj\.(\d+)\.LayerNorm\.", r"video_proj.\1.0."),
    (r"^input_vid_proj\.(\d+)\.net\.1\.", r"video_proj.\1.2."),
    (r"^input_txt_proj\.(\d+)\.LayerNorm\.", r"text_proj.\1.0."),
    (r"^input_txt_proj\.(\d+)\.net\.1\.", r"text_proj.\1.2."),
    (r"^transformer\.t2v_encoder\.layers\.(\d+)\.self_attn\.", r"t2v_encoder.layers.\1.cross_attn.attn."),
    (r"^transformer\.t2v_encoder\.layers\.(\d+)\.norm1\.", r"t2v_encoder.layers.\1.norm."),
    (r"^transformer\.t2v_encoder\.layers\.(\d+)\.norm2\.", r"t2v_encoder.layers.\1.ffn.norm."),
    (r"^transformer\.t2v_encoder\.layers\.(\d+)\.(linear1|linear2|activation)\.", r"t2v_encoder.layers.\1.ffn.\2."),
    (r"^transformer\.encoder\.layers\.(\d+)\.self_attn\.", r"encoder.layers.\1.self_attn."),
    (r"^transformer\.encoder\.layers\.(\d+)\.norm1\.", r"encoder.layers.\1.norm."),
    (r"^transformer\.encoder\.layers\.(\d+)\.norm2\.", r"encoder.layers.\1.ffn.norm."),
    (r"^transformer\.encoder\.layers\.(\d+)\.(linear1|linear2|activation)\.", r"encoder.layers.\1.ffn.\2."),
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
# Keys QD-DETR's forward does not use under the given option (False): dropped with a note.
UNUSED_WHEN_OFF = {r"^txt_position_embed\.": "use_txt_pos", r"^contrastive_align_projection_": "contrastive_align_loss"}
DATASETS = {"hl": "qvhighlights", "charadesSTA": "charades_sta", "tacos": "tacos", "tvsum": "tvsum",
            "youtube_uni": "youtube_highlights"}
# Widths of the anchors' feature sources, to split a concatenated input for per-source normalisation.
SOURCE_DIMS = {"slowfast": 2304, "clip": 512}
QVH_CLIP = "clip:openai/clip-vit-base-patch32"


@dataclass
class Converted:
    cfg: Config
    state_dict: dict[str, torch.Tensor]
    v_feat_dim: int  # TEF included
    t_feat_dim: int
    v_source_dims: list[int]
    encoder: str | None = None  # encoder of the features it was trained on
    dropped: dict[str, str] = field(default_factory=dict)  # QD-DETR key -> why
    epoch: int | None = None


def load_qd_detr_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict, loaded with weights_only=True (argparse.Namespace allowed for ``opt``)."""
    path = Path(path)
    if not path.is_file():
        raise MasraError("checkpoint file not found", file=path)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling raises many types; all mean "not a loadable QD-DETR checkpoint"
        raise MasraError(f"cannot load as a QD-DETR checkpoint (weights_only): {str(err).splitlines()[0]}",
                         file=path) from None
    if not isinstance(checkpoint, dict) or "model" not in checkpoint or "opt" not in checkpoint:
        raise MasraError("not a QD-DETR checkpoint: expected a dict with 'model' and 'opt'", file=path)
    return checkpoint


def rename_key(key: str) -> str | None:
    """The masra name of a QD-DETR parameter, None when no rule matches."""
    for pattern, replacement in RENAMES:
        if re.search(pattern, key):
            return re.sub(pattern, replacement, key)
    return None


def _option(opt: dict[str, Any], name: str, path: Path) -> Any:
    if name not in opt:
        raise MasraError("the checkpoint's opt has no such option", file=path, field=f"opt.{name}")
    return opt[name]


def _refuse_unsupported(opt: dict[str, Any], path: Path) -> None:
    checks = {
        "pre_norm": (False, "pre-norm transformer layers"),
        "span_loss_type": ("l1", "span classification (span_loss_type ce)"),
        "a_feat_dir": (None, "audio features"),
        "use_txt_pos": (False, "text position embeddings"),
        "position_embedding": ("sine", "learned video positions"),
    }
    for name, (supported, what) in checks.items():
        if opt.get(name, supported) != supported:
            raise MasraError(f"{what} are not part of masra's QD-DETR", file=path, field=f"opt.{name}")


def _source_dims(opt: dict[str, Any], raw_dim: int, path: Path) -> list[int]:
    dirs = list(opt.get("v_feat_dirs") or [])
    if len(dirs) <= 1:
        return [raw_dim]
    dims = [next((d for name, d in SOURCE_DIMS.items() if name in Path(str(p)).name), None) for p in dirs]
    if None in dims or sum(dims) != raw_dim:
        raise MasraError(f"cannot tell the widths of the video sources {dirs} (total {raw_dim})", file=path,
                         field="opt.v_feat_dirs")
    return dims


def config_from_opt(opt: dict[str, Any], path: Path) -> Config:
    """A masra Config with the checkpoint's architecture, data layout, losses and evaluation settings."""
    get = lambda name: _option(opt, name, path)  # noqa: E731
    cfg = Config(name=f"qd-detr:{path.name}")
    dataset = get("dset_name")
    if dataset not in DATASETS:
        raise MasraError(f"unknown dataset {dataset!r}; one of {', '.join(DATASETS)}", file=path, field="opt.dset_name")
    data, model, loss, train, ev = cfg.data, cfg.model, cfg.loss, cfg.train, cfg.eval
    data.dataset, data.domain = DATASETS[dataset], opt.get("dset_domain")
    data.max_q_l, data.max_v_l, data.clip_length = get("max_q_l"), get("max_v_l"), float(get("clip_length"))
    data.max_windows = opt.get("max_windows", data.max_windows)
    data.use_tef = "tef" in get("ctx_mode")
    data.normalize_video, data.normalize_text = not opt.get("no_norm_vfeat", False), not opt.get("no_norm_tfeat", False)
    model.hidden_dim, model.nheads, model.dim_feedforward = get("hidden_dim"), get("nheads"), get("dim_feedforward")
    model.t2v_layers = model.enc_layers = get("enc_layers")
    model.dec_layers, model.num_queries = get("dec_layers"), get("num_queries")
    model.dropout, model.input_dropout, model.n_input_proj = get("dropout"), get("input_dropout"), get("n_input_proj")
    model.activation = "prelu"  # qd_detr/transformer.py build_transformer
    loss.span, loss.giou, loss.label = get("span_loss_coef"), get("giou_loss_coef"), get("label_loss_coef")
    loss.eos_coef, loss.saliency, loss.saliency_margin = get("eos_coef"), get("lw_saliency"), get("saliency_margin")
    loss.match_span, loss.match_giou = get("set_cost_span"), get("set_cost_giou")
    loss.match_label = get("set_cost_class")
    loss.aux_loss = get("aux_loss")
    train.lr, train.weight_decay, train.lr_drop = get("lr"), get("wd"), get("lr_drop")
    train.batch_size, train.eval_batch_size, train.epochs = get("bsz"), get("eval_bsz"), get("n_epoch")
    train.grad_clip, train.seed = get("grad_clip"), get("seed")
    loss.use_matcher = dataset != "tvsum"
    # Window post-processing as masra's packaged config of the dataset does it; NMS as the checkpoint's run.
    packaged = load_config(packaged_configs()[data.dataset]).eval
    ev.postprocess, ev.clamp_to_duration = packaged.postprocess, packaged.clamp_to_duration
    ev.nms_threshold = float(opt.get("nms_thd", -1))
    ev.max_before_nms, ev.max_after_nms = opt.get("max_before_nms", 10), opt.get("max_after_nms", 10)
    validate_config(cfg)
    return cfg


def convert_qd_detr(path: str | Path, encoder: str | None = None) -> Converted:
    """Map a QD-DETR checkpoint onto masra's model; every masra parameter must receive a tensor."""
    from masra.model import build_model

    path = Path(path)
    checkpoint = load_qd_detr_checkpoint(path)
    opt = vars(checkpoint["opt"]) if isinstance(checkpoint["opt"], argparse.Namespace) else checkpoint["opt"]
    if not isinstance(opt, dict):
        raise MasraError(f"opt is a {type(opt).__name__}, expected argparse.Namespace or dict", file=path, field="opt")
    _refuse_unsupported(opt, path)
    cfg = config_from_opt(opt, path)
    source: dict[str, torch.Tensor] = checkpoint["model"]
    mapped: dict[str, torch.Tensor] = {}
    dropped: dict[str, str] = {}
    for key, tensor in source.items():
        unused = next((flag for pattern, flag in UNUSED_WHEN_OFF.items() if re.search(pattern, key)), None)
        if unused is not None and not opt.get(unused, False):
            dropped[key] = f"unused by QD-DETR's forward with {unused}=False"
            continue
        new = rename_key(key)
        if new is None:
            raise MasraError(f"QD-DETR tensor {key!r} has no masra counterpart", file=path, field="model")
        mapped[new] = tensor
    try:
        v_dim = int(mapped["video_proj.0.2.weight"].shape[1])
        t_dim = int(mapped["text_proj.0.2.weight"].shape[1])
    except KeyError as err:
        raise MasraError(f"checkpoint has no input projection {err}", file=path, field="model") from None
    tef = 2 if cfg.data.use_tef else 0
    if opt.get("v_feat_dim") not in (None, v_dim) or opt.get("t_feat_dim") not in (None, t_dim):
        raise MasraError(f"opt says v_feat_dim {opt.get('v_feat_dim')}, t_feat_dim {opt.get('t_feat_dim')}; the "
                         f"weights take {v_dim} and {t_dim}", file=path, field="opt.v_feat_dim")
    model, _ = build_model(cfg, v_dim, t_dim)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(mapped))
    extra = sorted(set(mapped) - set(expected))
    wrong = sorted(k for k in set(expected) & set(mapped) if expected[k].shape != mapped[k].shape)
    if missing or extra or wrong:
        raise MasraError(f"tensors do not match masra's model: missing {missing[:5]}, unexpected {extra[:5]}, "
                         f"shape differs {wrong[:5]}", file=path, field="model")
    source_dims = _source_dims(opt, v_dim - tef, path)
    dirs = [str(d) for d in opt.get("v_feat_dirs") or []] + [str(opt.get("t_feat_dir") or "")]
    if encoder is None and source_dims == [512] and all("clip" in Path(d.rstrip("/")).name for d in dirs):
        encoder = QVH_CLIP  # the anchors' clip_features / clip_text_features: OpenAI CLIP ViT-B/32
    return Converted(cfg, mapped, v_dim, t_dim, source_dims, encoder, dropped, checkpoint.get("epoch"))


def _check_replaceable(out: Path) -> None:
    """``--force`` replaces only a run that ``masra convert`` wrote: ``config.yaml`` plus ``last/`` whose
    checkpoint metadata names a conversion, nothing else. Any other folder is refused, never deleted."""
    from masra.checkpoint import CONFIG_FILE, INFO_FILE, STATE_FILE, WEIGHTS_FILE

    entries = sorted(p.name for p in out.iterdir())
    last = out / "last"
    checkpoint_files = sorted(p.name for p in last.iterdir()) if last.is_dir() else []
    try:
        converted = "converted_from" in json.loads((last / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        converted = False
    written = sorted([CONFIG_FILE, INFO_FILE, STATE_FILE, WEIGHTS_FILE])
    if entries != ["config.yaml", "last"] or checkpoint_files != written or not converted:
        raise MasraError(
            f"--force replaces only a run written by masra convert (config.yaml and last/ with a conversion "
            f"record, nothing else); this folder holds {entries[:8]}: choose another --out or remove it yourself",
            file=out)


def write_run(converted: Converted, out: str | Path, source: str | Path, *, force: bool = False) -> Path:
    """``out/last`` (a masra checkpoint folder) and ``out/config.yaml``; returns the checkpoint folder."""
    from masra.config import save_config
    from masra.model import build_model
    from masra.checkpoint import ModelDims, save_checkpoint

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not force:
            raise MasraError("output folder is not empty; pass --force to replace it", file=out)
        _check_replaceable(out)
        shutil.rmtree(out)
    cfg = converted.cfg
    model, _ = build_model(cfg, converted.v_feat_dim, converted.t_feat_dim)
    model.load_state_dict(converted.state_dict, strict=True)
    dims = ModelDims(converted.v_feat_dim, converted.t_feat_dim, None, converted.v_source_dims, converted.encoder)
    info = {"converted_from": {"format": "qd-detr", "file": str(Path(source).resolve()), "epoch": converted.epoch,
                               "dropped": converted.dropped}}
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    return save_checkpoint(out / "last", model=model, cfg=cfg, dims=dims, state={"converted": True}, info=info)
