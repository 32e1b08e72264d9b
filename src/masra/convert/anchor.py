"""What ``masra convert`` does for every anchor code base (QD-DETR, Moment-DETR, CG-DETR): read the checkpoint safely, map
every tensor onto the masra backbone by name, take the config from the checkpoint's ``opt``, write a run folder.

An :class:`Anchor` declares what differs: its name and ``masra convert`` format, the renaming rules, the
tensors its forward never uses with the checkpoint's options (dropped, and reported), the options masra does not
implement (refused), and the model settings it implies (``configure``). Everything else is shared: the data
layout, loss weights, training and evaluation settings come from ``opt`` under the option names the anchors
share (QD-DETR kept Moment-DETR's).

Checkpoints are read with ``torch.load(weights_only=True)``, allowing only ``argparse.Namespace`` (their
``opt``) besides tensors and plain containers; a pickle that would call anything else is refused, naming what it
would call. Every option is read with its type and range checked (:mod:`masra.convert.options`), and the
weights' names and shapes are checked against the model built on the ``meta`` device (no memory), so a crafted
size is refused before anything is allocated.
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from masra.config import Config, load_config, packaged_configs, validate_config
from masra.convert.options import OptReader
from masra.datasets import SALIENCY_ONLY_DATASETS
from masra.errors import MasraError

DATASETS = {"hl": "qvhighlights", "charadesSTA": "charades_sta", "tacos": "tacos", "tvsum": "tvsum",
            "youtube_uni": "youtube_highlights"}
# Widths of the anchors' feature sources, to split a concatenated input for per-source normalisation.
SOURCE_DIMS = {"slowfast": 2304, "clip": 512}
QVH_CLIP = "clip:openai/clip-vit-base-patch32"
CTX_MODES = ("video", "video_tef")  # the anchors' ctx_mode values with video features (TEF on or off)
# Sane caps on sizes (the anchors' checkpoints use widths <= 1024, tens of queries, a few layers): a crafted
# value past them is refused before the model is built even on the meta device.
MAX_WIDTH, MAX_LAYERS, MAX_HEADS, MAX_QUERIES = 16384, 64, 256, 10_000
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
    ``unsupported``: more refused options, as ``UNSUPPORTED``; ``configure(cfg, read)``: the model settings its
    architecture fixes or its own options set (each read through ``read``, type and range checked)."""

    name: str
    format: str
    renames: list[tuple[str, str]]
    configure: Callable[[Config, OptReader], None]
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
    """The checkpoint dict, loaded with weights_only=True (argparse.Namespace allowed for ``opt``), its ``model``
    a dict of tensors."""
    path = Path(path)
    if not path.is_file():
        raise MasraError("checkpoint file not found", file=path)
    if path.stat().st_size == 0:
        raise MasraError("the file is empty", file=path)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise MasraError(_refusal(path, anchor), file=path) from None
    except Exception as err:  # noqa: BLE001 - a truncated or foreign file fails in many ways
        first_line = next(iter(str(err).splitlines()), "")
        raise MasraError(f"cannot load as a {anchor.name} checkpoint: {type(err).__name__}: {first_line}".rstrip(": "),
                         file=path) from None
    if not isinstance(checkpoint, dict) or "model" not in checkpoint or "opt" not in checkpoint:
        raise MasraError(f"not a {anchor.name} checkpoint: expected a dict with 'model' and 'opt'", file=path)
    model = checkpoint["model"]
    if not isinstance(model, dict):
        raise MasraError(f"'model' has type {type(model).__name__}, expected a dict of tensors", file=path)
    for key, tensor in model.items():
        if not isinstance(tensor, torch.Tensor):
            raise MasraError(f"'model' entry {key!r} has type {type(tensor).__name__}, expected a tensor", file=path)
    return checkpoint


def _refusal(path: Path, anchor: Anchor) -> str:
    """Why a weights-only load refused the file, naming the functions or classes its pickle would call
    (read from the pickle's opcodes, nothing executed)."""
    try:
        calls = [name for name in torch.serialization.get_unsafe_globals_in_checkpoint(path)
                 if name != "argparse.Namespace"]
    except Exception:  # noqa: BLE001 - not a zip checkpoint: the names cannot be read without unpickling
        calls = []
    what = f"loading it would call {', '.join(calls)}" if calls else "it holds objects other than tensors and plain containers"
    return (f"refused: {what}, which a weights-only load does not allow (a checkpoint made by {anchor.name} holds "
            "only tensors and its options); masra does not load such a file")


def rename_key(key: str, renames: list[tuple[str, str]]) -> str | None:
    """The masra name of an anchor's parameter, None when no rule matches."""
    for pattern, replacement in renames:
        if re.search(pattern, key):
            return re.sub(pattern, replacement, key)
    return None


def _refuse_unsupported(opt: dict[str, Any], anchor: Anchor, path: Path) -> None:
    for name, (supported, what) in (UNSUPPORTED | anchor.unsupported).items():
        if opt.get(name, supported) != supported:
            raise MasraError(f"{what} are not part of masra's {anchor.name}", file=path, field=f"opt.{name}")


def _source_dims(opt: dict[str, Any], raw_dim: int, path: Path) -> list[int]:
    dirs = OptReader(opt, path).names("v_feat_dirs")
    if len(dirs) <= 1:
        return [raw_dim]
    dims = [next((d for name, d in SOURCE_DIMS.items() if name in Path(str(p)).name), None) for p in dirs]
    if None in dims or sum(dims) != raw_dim:
        raise MasraError(f"cannot tell the widths of the video sources {dirs} (total {raw_dim})", file=path,
                         field="opt.v_feat_dirs")
    return dims


def config_from_opt(opt: dict[str, Any], anchor: Anchor, path: Path) -> Config:
    """A masra Config with the checkpoint's architecture, data layout, losses and evaluation settings."""
    read = OptReader(opt, path)
    cfg = Config(name=f"{anchor.format}:{path.name}")
    dataset = read.choice("dset_name", DATASETS)
    data, model, loss, train, ev = cfg.data, cfg.model, cfg.loss, cfg.train, cfg.eval
    data.dataset, data.domain = DATASETS[dataset], read.text("dset_domain", None)
    data.max_q_l = read.integer("max_q_l", 1, 100_000, also=(-1,))
    data.max_v_l = read.integer("max_v_l", 1, 1_000_000, also=(-1,))
    data.clip_length = read.number("clip_length", 0.01, 3600.0)
    data.max_windows = read.integer("max_windows", 1, 10_000, data.max_windows)
    data.use_tef = read.choice("ctx_mode", CTX_MODES) == "video_tef"
    data.normalize_video = not read.flag("no_norm_vfeat", False)
    data.normalize_text = not read.flag("no_norm_tfeat", False)
    model.hidden_dim, model.nheads = read.integer("hidden_dim", 1, MAX_WIDTH), read.integer("nheads", 1, MAX_HEADS)
    if model.hidden_dim % model.nheads:
        raise MasraError(f"hidden_dim {model.hidden_dim} is not a multiple of nheads {model.nheads}", file=path,
                         field="opt.nheads")
    model.dim_feedforward = read.integer("dim_feedforward", 1, 4 * MAX_WIDTH)
    model.enc_layers, model.dec_layers = read.integer("enc_layers", 1, MAX_LAYERS), read.integer("dec_layers", 1, MAX_LAYERS)
    model.num_queries = read.integer("num_queries", 1, MAX_QUERIES)
    model.dropout = read.number("dropout", 0.0, 1.0, below_high=True)
    model.input_dropout = read.number("input_dropout", 0.0, 1.0, below_high=True)
    model.n_input_proj = read.integer("n_input_proj", 1, 3)  # the anchors build 1 to 3 projection layers
    weight = lambda name: read.number(name, 0.0, math.inf)  # noqa: E731 - a loss weight: finite, >= 0
    loss.span, loss.giou, loss.label = weight("span_loss_coef"), weight("giou_loss_coef"), weight("label_loss_coef")
    loss.eos_coef, loss.saliency, loss.saliency_margin = weight("eos_coef"), weight("lw_saliency"), weight("saliency_margin")
    loss.match_span, loss.match_giou = weight("set_cost_span"), weight("set_cost_giou")
    loss.match_label = weight("set_cost_class")
    loss.aux_loss = read.flag("aux_loss")
    train.lr, train.weight_decay = read.number("lr", 0.0, math.inf), weight("wd")
    train.lr_drop = read.integer("lr_drop", 1, 10**9)
    train.batch_size, train.eval_batch_size = read.integer("bsz", 1, 10**9), read.integer("eval_bsz", 1, 10**9)
    train.epochs, train.seed = read.integer("n_epoch", 1, 10**9), read.integer("seed", 0, 2**32 - 1)
    train.grad_clip = read.number("grad_clip", -math.inf, math.inf)
    loss.use_matcher = data.dataset not in SALIENCY_ONLY_DATASETS  # the anchors match no spans there
    # Window post-processing as masra's packaged config of the dataset does it; NMS as the checkpoint's run.
    packaged = load_config(packaged_configs()[data.dataset]).eval
    ev.postprocess, ev.clamp_to_duration = packaged.postprocess, packaged.clamp_to_duration
    ev.nms_threshold = read.number("nms_thd", -1.0, 1.0, -1)
    ev.max_before_nms = read.integer("max_before_nms", 1, MAX_QUERIES, 10)
    ev.max_after_nms = read.integer("max_after_nms", 1, MAX_QUERIES, 10)
    anchor.configure(cfg, read)  # last: what the anchor's code fixes overrides the shared defaults above
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
    read = OptReader(opt, path)
    source: dict[str, torch.Tensor] = checkpoint["model"]
    mapped: dict[str, torch.Tensor] = {}
    dropped: dict[str, str] = {}
    for key, tensor in source.items():
        unused = next((flag for pattern, flag in anchor.unused_when_off.items() if re.search(pattern, key)), None)
        if unused is not None and not read.flag(unused, False):
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
    projections = {name: mapped.get(f"{name}.0.2.weight") for name in ("video_proj", "text_proj")}
    for name, weight in projections.items():
        if weight is None or weight.dim() != 2:
            raise MasraError(f"checkpoint has no 2-d input projection {name!r}", file=path, field="model")
    v_dim, t_dim = (int(weight.shape[1]) for weight in projections.values())  # type: ignore[union-attr]
    tef = 2 if cfg.data.use_tef else 0
    if opt.get("v_feat_dim") not in (None, v_dim) or opt.get("t_feat_dim") not in (None, t_dim):
        raise MasraError(f"opt says v_feat_dim {opt.get('v_feat_dim')}, t_feat_dim {opt.get('t_feat_dim')}; the "
                         f"weights take {v_dim} and {t_dim}", file=path, field="opt.v_feat_dim")
    with torch.device("meta"):  # names and shapes only: nothing is allocated before they match the weights
        model, _ = build_model(cfg, v_dim, t_dim)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(mapped))
    extra = sorted(set(mapped) - set(expected))
    wrong = sorted(k for k in set(expected) & set(mapped) if expected[k].shape != mapped[k].shape)
    if missing or extra or wrong:
        raise MasraError(f"tensors do not match masra's model: missing {missing[:5]}, unexpected {extra[:5]}, "
                         f"shape differs {wrong[:5]}", file=path, field="model")
    source_dims = _source_dims(opt, v_dim - tef, path)
    dirs = [*read.names("v_feat_dirs"), read.text("t_feat_dir", None) or ""]
    if encoder is None and source_dims == [512] and all("clip" in Path(d.rstrip("/")).name for d in dirs):
        encoder = QVH_CLIP  # the anchors' clip_features / clip_text_features: OpenAI CLIP ViT-B/32
    epoch = checkpoint.get("epoch")
    if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, int)):
        raise MasraError(f"{epoch!r} is not an epoch number", file=path, field="epoch")
    return Converted(cfg, mapped, v_dim, t_dim, source_dims, anchor.format, encoder, dropped, epoch)


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


def check_output_folder(out: Path, force: bool) -> bool:
    """Whether ``out`` holds a converted run that ``--force`` replaces; a MasraError when it cannot be written:
    a file, a symlink (never written or deleted through), or a non-empty folder without ``--force`` or not
    written by masra convert."""
    if out.is_symlink():
        raise MasraError("is a symlink; masra convert writes only into a real folder (give the folder itself)",
                         file=out)
    if out.exists() and not out.is_dir():
        raise MasraError("exists and is not a folder", file=out)
    if not out.exists() or not any(out.iterdir()):
        return False
    if not force:
        raise MasraError("output folder is not empty; pass --force to replace it", file=out)
    _check_replaceable(out)
    return True


def write_run(converted: Converted, out: str | Path, source: str | Path, *, force: bool = False) -> Path:
    """``out/last`` (a masra checkpoint folder) and ``out/config.yaml``; returns the checkpoint folder."""
    from masra.checkpoint import ModelDims, save_checkpoint
    from masra.config import save_config
    from masra.model import build_model

    out = Path(out)
    if check_output_folder(out, force):
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
