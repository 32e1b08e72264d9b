"""What ``masra convert`` does for every anchor code base (QD-DETR, Moment-DETR): read the checkpoint safely, map
every tensor onto the masra backbone by name, take the config from the checkpoint's ``opt``, write a run folder.

An :class:`Anchor` declares what differs: its name and ``masra convert`` format, the renaming rules, the
tensors its forward never uses with the checkpoint's options (dropped, and reported), the options masra does not
implement (refused), and the model settings it implies (``configure``). Everything else is shared: the data
layout, loss weights, training and evaluation settings come from ``opt`` under the option names the anchors
share (QD-DETR kept Moment-DETR's).

Checkpoints are read with ``torch.load(weights_only=True)``, allowing only ``argparse.Namespace`` (their
``opt``) besides tensors and plain containers.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from masra.config import Config, load_config, packaged_configs, validate_config
from masra.errors import MasraError

DATASETS = {"hl": "qvhighlights", "charadesSTA": "charades_sta", "tacos": "tacos", "tvsum": "tvsum",
            "youtube_uni": "youtube_highlights"}
# Widths of the anchors' feature sources, to split a concatenated input for per-source normalisation.
SOURCE_DIMS = {"slowfast": 2304, "clip": 512}
QVH_CLIP = "clip:openai/clip-vit-base-patch32"
# Options every anchor shares that masra does not implement: option -> (the supported value, what it is).
UNSUPPORTED = {
    "pre_norm": (False, "pre-norm transformer layers"),
    "span_loss_type": ("l1", "span classification (span_loss_type ce)"),
    "a_feat_dir": (None, "audio features"),
    "use_txt_pos": (False, "text position embeddings"),
    "position_embedding": ("sine", "learned video positions"),
}


@dataclass(frozen=True)
class Anchor:
    """One anchor code base. ``renames``: (pattern, replacement) applied to each of its keys, the first match
    wins; ``unused_when_off``: key pattern -> the option without which its forward never reads the tensor;
    ``never_used``: key pattern -> why its forward builds the tensor but no output any loss reads depends on it;
    ``unsupported``: more refused options, as ``UNSUPPORTED``; ``configure(cfg, get)``: the model settings its
    architecture fixes (``get(name)`` reads a required option)."""

    name: str
    format: str
    renames: list[tuple[str, str]]
    configure: Callable[[Config, Callable[[str], Any]], None]
    unused_when_off: dict[str, str] = field(default_factory=dict)
    never_used: dict[str, str] = field(default_factory=dict)
    unsupported: dict[str, tuple[Any, str]] = field(default_factory=dict)


@dataclass
class Converted:
    cfg: Config
    state_dict: dict[str, torch.Tensor]
    v_feat_dim: int  # TEF included
    t_feat_dim: int
    v_source_dims: list[int]
    format: str  # the anchor's ``masra convert`` format
    encoder: str | None = None  # encoder of the features it was trained on
    dropped: dict[str, str] = field(default_factory=dict)  # anchor key -> why
    epoch: int | None = None


def load_anchor_checkpoint(path: str | Path, anchor: Anchor) -> dict[str, Any]:
    """The checkpoint dict, loaded with weights_only=True (argparse.Namespace allowed for ``opt``)."""
    path = Path(path)
    if not path.is_file():
        raise MasraError("checkpoint file not found", file=path)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling raises many types; all mean "not a loadable checkpoint"
        raise MasraError(f"cannot load as a {anchor.name} checkpoint (weights_only): {str(err).splitlines()[0]}",
                         file=path) from None
    if not isinstance(checkpoint, dict) or "model" not in checkpoint or "opt" not in checkpoint:
        raise MasraError(f"not a {anchor.name} checkpoint: expected a dict with 'model' and 'opt'", file=path)
    return checkpoint


def rename_key(key: str, renames: list[tuple[str, str]]) -> str | None:
    """The masra name of an anchor's parameter, None when no rule matches."""
    for pattern, replacement in renames:
        if re.search(pattern, key):
            return re.sub(pattern, replacement, key)
    return None


def _option(opt: dict[str, Any], name: str, path: Path) -> Any:
    if name not in opt:
        raise MasraError("the checkpoint's opt has no such option", file=path, field=f"opt.{name}")
    return opt[name]


def _refuse_unsupported(opt: dict[str, Any], anchor: Anchor, path: Path) -> None:
    for name, (supported, what) in (UNSUPPORTED | anchor.unsupported).items():
        if opt.get(name, supported) != supported:
            raise MasraError(f"{what} are not part of masra's {anchor.name}", file=path, field=f"opt.{name}")


def _source_dims(opt: dict[str, Any], raw_dim: int, path: Path) -> list[int]:
    dirs = list(opt.get("v_feat_dirs") or [])
    if len(dirs) <= 1:
        return [raw_dim]
    dims = [next((d for name, d in SOURCE_DIMS.items() if name in Path(str(p)).name), None) for p in dirs]
    if None in dims or sum(dims) != raw_dim:
        raise MasraError(f"cannot tell the widths of the video sources {dirs} (total {raw_dim})", file=path,
                         field="opt.v_feat_dirs")
    return dims


def config_from_opt(opt: dict[str, Any], anchor: Anchor, path: Path) -> Config:
    """A masra Config with the checkpoint's architecture, data layout, losses and evaluation settings."""
    get = lambda name: _option(opt, name, path)  # noqa: E731
    cfg = Config(name=f"{anchor.format}:{path.name}")
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
    model.enc_layers, model.dec_layers, model.num_queries = get("enc_layers"), get("dec_layers"), get("num_queries")
    model.dropout, model.input_dropout, model.n_input_proj = get("dropout"), get("input_dropout"), get("n_input_proj")
    anchor.configure(cfg, get)
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


def convert_checkpoint(path: str | Path, anchor: Anchor, encoder: str | None = None) -> Converted:
    """Map an anchor's checkpoint onto masra's backbone; every masra parameter must receive a tensor."""
    from masra.model import build_model

    path = Path(path)
    checkpoint = load_anchor_checkpoint(path, anchor)
    opt = vars(checkpoint["opt"]) if isinstance(checkpoint["opt"], argparse.Namespace) else checkpoint["opt"]
    if not isinstance(opt, dict):
        raise MasraError(f"opt is a {type(opt).__name__}, expected argparse.Namespace or dict", file=path, field="opt")
    _refuse_unsupported(opt, anchor, path)
    cfg = config_from_opt(opt, anchor, path)
    source: dict[str, torch.Tensor] = checkpoint["model"]
    mapped: dict[str, torch.Tensor] = {}
    dropped: dict[str, str] = {}
    for key, tensor in source.items():
        unused = next((flag for pattern, flag in anchor.unused_when_off.items() if re.search(pattern, key)), None)
        if unused is not None and not opt.get(unused, False):
            dropped[key] = f"unused by {anchor.name}'s forward with {unused}=False"
            continue
        never = next((why for pattern, why in anchor.never_used.items() if re.search(pattern, key)), None)
        if never is not None:
            dropped[key] = never
            continue
        new = rename_key(key, anchor.renames)
        if new is None:
            raise MasraError(f"{anchor.name} tensor {key!r} has no masra counterpart", file=path, field="model")
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
    return Converted(cfg, mapped, v_dim, t_dim, source_dims, anchor.format, encoder, dropped, checkpoint.get("epoch"))


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
    from masra.checkpoint import ModelDims, save_checkpoint
    from masra.config import save_config
    from masra.model import build_model

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
    info = {"converted_from": {"format": converted.format, "file": str(Path(source).resolve()),
                               "epoch": converted.epoch, "dropped": converted.dropped}}
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    return save_checkpoint(out / "last", model=model, cfg=cfg, dims=dims, state={"converted": True}, info=info)
