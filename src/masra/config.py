"""Configuration: nested dataclasses, loaded from YAML and overridden from the command line.

Merge order (later wins): dataclass defaults < YAML file(s), in order, each after the file(s) named by its
``base:`` key (a name or a list of names) < ``key.sub=value`` overrides. A config is a file path or the name
of a config shipped in the package (``qvhighlights``, see ``packaged_configs()``). Unknown keys are errors, so a typo in a YAML
file or an override never passes silently.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from masra.datasets import DATASET_CLIP_LENGTH, DATASETS, QVH_CLIP_LENGTH, SALIENCY_ONLY_DATASETS
from masra.errors import MasraError
from masra.model.parts import PARTS, Part

__all__ = ["DATASETS", "DATASET_CLIP_LENGTH", "QVH_CLIP_LENGTH", "SALIENCY_ONLY_DATASETS"]  # re-exported

PACKAGED_CONFIG_DIR = Path(__file__).resolve().parent / "configs"
# Key of a YAML file naming the config it overlays (a packaged name, or a path relative to the file).
BASE_KEY = "base"


@dataclass
class DataConfig:
    dataset: str = "qvhighlights"
    train_path: str | None = None
    eval_path: str | None = None
    eval_split_name: str = "val"
    # Annotation file of the held-out test split (``masra evaluate/predict --split test``); None = not configured.
    test_path: str | None = None
    # TVSum / YouTube Highlights train one model per domain: keep only rows of this domain (None = all rows).
    domain: str | None = None
    # Video feature sources, concatenated along D in this order (QVH anchors: slowfast then clip).
    v_feat_dirs: list[str] = field(default_factory=list)
    t_feat_dir: str | None = None
    # Per-video prior files ({vid}.npz with clip_caption_emb / event_emb / event_spans); None = no priors.
    prior_dir: str | None = None
    # Text feature file name: f"{t_feat_prefix}{qid}.npz" ("qid" for QVH/Charades, "" for TACoS/TVSum/YouTube).
    t_feat_prefix: str = "qid"
    t_feat_key: str = "last_hidden_state"
    max_q_l: int = 32
    max_v_l: int = 75
    clip_length: float = 2.0
    max_windows: int = 5
    use_tef: bool = True
    normalize_video: bool = True
    normalize_text: bool = True
    # The model's input dims are not settings: see masra.checkpoint.ModelDims (REMOVED_KEYS below).
    num_workers: int = 0


@dataclass
class CGDETRConfig:
    """CG-DETR's own modules (read only with ``model.backbone: cg_detr``; defaults: its QVHighlights run)."""

    num_dummies: int = 45  # dummy tokens next to the query tokens in the T2V attention
    dummy_layers: int = 2  # self-attention layers over [dummies ; query tokens] making the dummies query-aware
    sentence_layers: int = 1  # training: the sentence-token encoder (moment-sentence alignment)
    moment_layers: int = 1  # training: the moment-token encoder
    prompt_bank: int = 10  # the saliency token's learned prototypes (CG-DETR's total_prompts)
    prompts: int = 1  # how many of them the saliency token mixes (its num_prompts, top-k)


@dataclass
class BaselineModelConfig:
    # The base grounding model (masra.model.backbones): qd_detr (QD-DETR) | moment_detr (Moment-DETR; no T2V
    # encoder, no negative pairs, no global token: t2v_layers is read only by a part that brings one, DAI) |
    # cg_detr (CG-DETR: adaptive T2V attention with dummy tokens, settings in model.cg_detr).
    backbone: str = "qd_detr"
    hidden_dim: int = 256
    nheads: int = 8
    dim_feedforward: int = 1024
    t2v_layers: int = 2
    enc_layers: int = 2
    dec_layers: int = 2
    num_queries: int = 10
    dropout: float = 0.1
    input_dropout: float = 0.5
    n_input_proj: int = 2
    activation: str = "prelu"
    # QD-DETR's negative pairs: text rolled by one in the batch, a second pass gives s_neg.
    use_negative_pairs: bool = True
    # Temporal encoder attention: 0 = full (QD-DETR); w > 0 = each clip sees clips within ±w and the global
    # token (linear time in the video length, for long videos; docs/benchmarks.md gives the accuracy cost).
    encoder_window: int = 0
    # Moment-DETR only: its contrastive alignment of the matched queries with the query tokens (heads of width
    # contrastive_dim; loss weight loss.contrastive_align). Off in Moment-DETR's released runs.
    contrastive_align: bool = False
    contrastive_dim: int = 64
    cg_detr: CGDETRConfig = field(default_factory=CGDETRConfig)


@dataclass
class BaselineLossConfig:
    span: float = 10.0
    giou: float = 1.0
    label: float = 4.0
    eos_coef: float = 0.1
    saliency: float = 1.0
    saliency_margin: float = 0.2
    rank_temperature: float = 0.5
    # Weight of the saliency loss's negative-pair term, −log(1 − σ(s_neg)) over the mismatched query's clips (and
    # CG-DETR's −log(1 − a) on its attention): 1 in QD-DETR and CG-DETR, 0 in CG-DETR's YouTube Highlights runs
    # (cg_detr_youtube_highlights). The negative pairs still join the rank-contrastive term; 0 skips the term.
    negative_pair: float = 1.0
    # Moment-DETR's contrastive alignment loss (with model.contrastive_align): weight and temperature.
    contrastive_align: float = 0.02
    contrastive_temperature: float = 0.07
    # CG-DETR's losses (model.backbone cg_detr; docs/model.md, "Backbones"): the saliency losses on the T2V
    # attention's text mass, added to loss_saliency with this factor (its lw_wattn); the moment-sentence
    # alignment (lw_ms_align); the distillation of the moment-to-words similarity into the T2V attention
    # (lw_distill); the orthogonality of the dummies and of the prototypes (weighted with lw_distill in CG-DETR).
    saliency_attention: float = 1.0
    moment_sentence: float = 1.0
    distill: float = 1.0
    orthogonal_dummy: float = 1.0
    aux_loss: bool = True
    # False: no Hungarian matching and no set losses, saliency only (TVSum / YouTube Highlights).
    use_matcher: bool = True
    # Matching costs (Hungarian): C = span*L1 + giou*(-GIoU) + label*(-p_fg).
    match_span: float = 10.0
    match_giou: float = 1.0
    match_label: float = 4.0
    # Auxiliary (MASRA part) losses, docs/method.md "Auxiliary losses at the start of training": their weights
    # are multiplied by a ramp from 0 to 1, linear over aux_ramp_epochs epochs after aux_ramp_start epochs
    # (fractions allowed; both 0 = full weight from the first step).
    aux_ramp_start: float = 0.0
    aux_ramp_epochs: float = 0.0
    # True: each auxiliary loss with a known chance level c enters the total as (L - c) / c: 0 at chance,
    # -1 when perfect, its gradient scaled by 1 / c (e.g. ESTA's InfoNCE by 1 / log #candidates).
    aux_chance_norm: bool = False


def _with_parts(name: str, base: type, part_fields: list[tuple[str, Any, Any]]) -> type:
    """The dataclass ``name``: ``base``'s fields, then ``part_fields``; importable (and picklable) from here."""
    cls = dataclasses.make_dataclass(name, part_fields, bases=(base,))
    cls.__module__ = __name__
    return cls


def _loss_fields(part: Part) -> list[tuple[str, Any, Any]]:
    if part.loss_config is None:
        return []
    hints = typing.get_type_hints(part.loss_config)
    return [(f.name, hints[f.name], field(default=f.default)) for f in dataclasses.fields(part.loss_config)]


# The MASRA parts' settings join the baseline's: ``model.<part>`` (each part's config dataclass) and the fields
# of each part's loss config under ``loss.`` (masra.model.parts; all parts off = the baseline).
ModelConfig = _with_parts(
    "ModelConfig", BaselineModelConfig, [(p.name, p.config, field(default_factory=p.config)) for p in PARTS]
)
LossConfig = _with_parts("LossConfig", BaselineLossConfig, [f for p in PARTS for f in _loss_fields(p)])


@dataclass
class TrainConfig:
    seed: int = 2018
    epochs: int = 200
    batch_size: int = 32
    eval_batch_size: int = 100
    lr: float = 1e-4
    weight_decay: float = 1e-4
    # Learning-rate schedule, stepped after every optimizer step (docs/training.md, "Learning-rate schedule"):
    # "step" multiplies lr by lr_gamma every lr_drop epochs (QD-DETR's StepLR); "cosine" decays lr to
    # lr * lr_min_ratio over the run. Both start with a linear warm-up over warmup_epochs (0 = none).
    lr_schedule: str = "step"
    warmup_epochs: float = 0.0
    lr_min_ratio: float = 0.0
    lr_drop: int = 400
    lr_gamma: float = 0.1
    grad_clip: float = 0.1
    # The parts' training diagnostics (docs/method.md, "Diagnostics": no_grad statistics, no effect on the
    # losses) are recorded on one training step in this many, and the epoch's diag_* means are over those steps:
    # recording them on every step cost a few per cent of a MASRA step (docs/method.md). 1 = every step.
    diagnostics_every: int = 8
    eval_every: int = 5
    best_metric: str = "MR-full-mAP"
    # Stop after this many evaluations without improvement; <= 0 disables early stopping.
    early_stop_patience: int = 0
    # "none" | "bf16" | "fp16"
    amp: str = "none"
    # "auto" picks cuda when available, else cpu.
    device: str = "auto"
    output_dir: str = "runs/masra"


@dataclass
class EvalConfig:
    # Post-processing of windows before writing: "qvhighlights" (clamp [0,150], round to 2 s),
    # "round_clip" (clamp [0,150], round to clip_length), "round_only" (round to clip_length), "none".
    postprocess: str = "qvhighlights"
    clamp_to_duration: bool = False
    nms_threshold: float = -1.0
    max_before_nms: int = 10
    max_after_nms: int = 10


@dataclass
class Config:
    name: str = "masra"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


MASRA_PARTS = tuple(part.name for part in PARTS)


def _resolve_type(tp: Any) -> Any:
    """Strip Optional/Union-with-None so values can be checked against the real type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _coerce(value: Any, tp: Any, where: str) -> Any:
    tp = _resolve_type(tp)
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            value = [value]
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item_tp, where) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise MasraError(f"expected true/false, got {value!r}", field=where)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise MasraError(f"expected an integer, got {value!r}", field=where)
        return value
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads "1e-4" (no dot) as a string.
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise MasraError(f"expected a number, got {value!r}", field=where)
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise MasraError(f"expected a string, got {value!r}", field=where)
        return str(value)
    return value


def _update(obj: Any, values: dict[str, Any], prefix: str, source: str | None) -> None:
    fields = {f.name: f for f in dataclasses.fields(obj)}
    hints = typing.get_type_hints(type(obj))
    for key, value in values.items():
        where = f"{prefix}{key}"
        if key not in fields:
            raise MasraError(f"unknown config key (known: {', '.join(fields)})", file=source, field=where)
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise MasraError("expected a mapping", file=source, field=where)
            _update(current, value, where + ".", source)
        else:
            try:
                setattr(obj, key, _coerce(value, hints[key], where))
            except MasraError as err:
                raise MasraError(err.message, file=source, field=where) from None


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply ``a.b.c=value`` strings; values are parsed as YAML scalars/lists (``true``, ``1e-4``, ``[a, b]``)."""
    for item in overrides:
        if "=" not in item:
            raise MasraError(f"override {item!r} is not of the form key.sub=value")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw != "" else None
        nested: dict[str, Any] = value
        for part in reversed(key.strip().split(".")):
            nested = {part: nested}
        _update(cfg, nested, "", "command line")
    return cfg


def packaged_configs() -> dict[str, Path]:
    """The configs shipped inside the package, by name (file stem)."""
    return {path.stem: path for path in sorted(PACKAGED_CONFIG_DIR.glob("*.yaml"))}


def backbone_layers() -> dict[str, Path]:
    """The shipped backbone layers by backbone name (``configs/backbones/<name>.yaml``): a backbone's own model and
    loss settings, without data or widths, to merge after any config. The default backbone, qd_detr, has none."""
    return {path.stem: path for path in sorted((PACKAGED_CONFIG_DIR / "backbones").glob("*.yaml"))}


def resolve_config_path(name_or_path: str | Path, relative_to: Path | None = None) -> Path:
    """A config file: an existing path (relative to ``relative_to`` when given), else a packaged config name."""
    path = Path(name_or_path)
    if relative_to is not None and not path.is_absolute():
        path = relative_to / path
    if path.is_file():
        return path
    packaged = packaged_configs()
    name = str(name_or_path).removesuffix(".yaml")
    if name in packaged:  # a bare name only: "qvhighlights" or "qvhighlights.yaml", never "dir/qvhighlights"
        return packaged[name]
    raise MasraError(f"config file not found, and not a packaged config (packaged: {', '.join(packaged)})",
                     file=name_or_path)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise MasraError(f"invalid YAML: {err}", file=path) from None
    if not isinstance(values, dict):
        raise MasraError("top level must be a mapping", file=path)
    return values


# Keys renamed since a config or checkpoint may have been written: old dotted name -> new one.
RENAMED_KEYS = {
    "train.use_matcher": "loss.use_matcher",
    "model.esta.clip_event_weight": "loss.esta_clip_event_weight",
    "model.lrca.band": "loss.lrca_band",
    "model.lrca.text_temperature": "loss.lrca_text_temperature",
}


# Keys removed since a config or checkpoint may have been written; their values are ignored on load.
# data.v_feat_dim / data.t_feat_dim: the model's input dims have one home, masra.checkpoint.ModelDims.
REMOVED_KEYS = ("data.v_feat_dim", "data.t_feat_dim", "model.sge.semantic_dim")


# Keys added with a default that changes what files written before them did: a saved config (a full dump: a
# checkpoint's or a run's) that has the key's section but not the key gets the old behaviour back.
# model.esta.source: ESTA read the final clip memory before it read the projected clips by default.
# model.sge.back_norm: SGE fused ψ(φ̂) without a layer norm before it fused LN(ψ(φ̂)).
# model.sora.feed_forward: SORA's layer had a feed-forward sub-layer before it was attention only.
# A key added with the old behaviour as its default (loss.negative_pair: 1) needs no entry.
ADDED_KEYS_OLD_VALUES = {"model.esta.source": "memory", "model.sge.back_norm": "none", "model.sora.feed_forward": True}


def fill_added_keys(values: dict[str, Any]) -> dict[str, Any]:
    """Give a saved config written before a key of ``ADDED_KEYS_OLD_VALUES`` existed that key's old value, in
    place: only where the key's section is there (a partial user file keeps the current defaults) and switched
    on (a part that was off behaved the same either way)."""
    for dotted, old_value in ADDED_KEYS_OLD_VALUES.items():
        holder, leaf = _holder(values, dotted)
        if holder is not None and holder.get("enabled", True):
            holder.setdefault(leaf, old_value)
    return values


def _holder(values: dict[str, Any], dotted: str) -> tuple[dict[str, Any] | None, str]:
    """The mapping that holds the last part of a dotted key (None when a parent is missing), and that part."""
    *parents, leaf = dotted.split(".")
    holder: Any = values
    for part in parents:
        holder = holder.get(part) if isinstance(holder, dict) else None
    return (holder if isinstance(holder, dict) else None), leaf


def _migrate_old_keys(values: dict[str, Any]) -> dict[str, Any]:
    """Bring the keys of files written by older versions up to date, in place: move renamed keys
    (``RENAMED_KEYS``) to their new place and drop removed ones (``REMOVED_KEYS``)."""
    for old in REMOVED_KEYS:
        holder, leaf = _holder(values, old)
        if holder is not None:
            holder.pop(leaf, None)
    for old, new in RENAMED_KEYS.items():
        holder, leaf = _holder(values, old)
        if holder is not None and leaf in holder:
            value = holder.pop(leaf)
            *new_parents, new_leaf = new.split(".")
            target = values
            for part in new_parents:
                target = target.setdefault(part, {})
            target.setdefault(new_leaf, value)
    return values


def _merge_file(cfg: Config, path: Path, seen: tuple[Path, ...] = ()) -> None:
    """Merge one YAML file into ``cfg``, after the files its ``base:`` key names (a name or path, or a list of
    them merged in order; recursively)."""
    if path.resolve() in seen:
        raise MasraError("config files name each other as base in a cycle", file=path, field=BASE_KEY)
    values = _migrate_old_keys(_read_yaml(path))
    base = values.pop(BASE_KEY, None)
    bases = [base] if isinstance(base, str) else base
    if bases is not None and not (isinstance(bases, list) and all(isinstance(b, str) for b in bases)):
        raise MasraError("expected a config name or path, or a list of them", file=path, field=BASE_KEY)
    for name in bases or []:
        _merge_file(cfg, resolve_config_path(name, relative_to=path.parent), seen + (path.resolve(),))
    _update(cfg, values, "", str(path))


def load_config(paths: list[str | Path] | str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Build a Config from defaults, then each YAML file (path or packaged name) in order, then the overrides."""
    cfg = Config()
    if paths is None:
        paths = []
    elif isinstance(paths, (str, Path)):
        paths = [paths]
    for path in paths:
        _merge_file(cfg, resolve_config_path(path))
    apply_overrides(cfg, overrides or [])
    validate_config(cfg)
    return cfg


def validate_config(cfg: Config) -> None:
    if cfg.data.dataset not in DATASETS:
        raise MasraError(f"unknown dataset {cfg.data.dataset!r}; one of {', '.join(DATASETS)}", field="data.dataset")
    if cfg.train.lr_schedule not in ("step", "cosine"):
        raise MasraError("must be step or cosine", field="train.lr_schedule")
    for where, value in (("train.warmup_epochs", cfg.train.warmup_epochs), ("loss.aux_ramp_start", cfg.loss.aux_ramp_start),
                         ("loss.aux_ramp_epochs", cfg.loss.aux_ramp_epochs)):
        if value < 0:
            raise MasraError("must be >= 0", field=where)
    if not 0.0 <= cfg.train.lr_min_ratio <= 1.0:
        raise MasraError("must be between 0 and 1", field="train.lr_min_ratio")
    if cfg.train.amp not in ("none", "bf16", "fp16"):
        raise MasraError("must be none, bf16 or fp16", field="train.amp")
    if cfg.train.diagnostics_every < 1:
        raise MasraError(f"must be at least 1 (1 = every step), got {cfg.train.diagnostics_every}",
                         field="train.diagnostics_every")
    for part in PARTS:
        if part.validate is not None:
            part.validate(getattr(cfg.model, part.name))
    from masra.model.backbones import get_backbone  # here: the backbones' modules import this one

    get_backbone(cfg.model)
    if cfg.eval.postprocess not in ("qvhighlights", "round_clip", "round_only", "none"):
        raise MasraError("must be qvhighlights, round_clip, round_only or none", field="eval.postprocess")
    for name in ("max_q_l", "max_v_l"):
        if getattr(cfg.data, name) == 0:
            raise MasraError("must be positive, or -1 for no limit", field=f"data.{name}")


def config_to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def flatten_dotted(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts (a config's dict, a bench row) as {dotted key: value}, the form of ``--set`` keys."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten_dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_from_dict(values: dict[str, Any]) -> Config:
    """A saved config (a full dump, e.g. a checkpoint's), with the keys of older versions brought up to date."""
    cfg = Config()
    _update(cfg, fill_added_keys(_migrate_old_keys(copy.deepcopy(values))), "", "checkpoint")
    return cfg


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def parse_masra_parts(parts: list[str] | str) -> list[str]:
    """``all`` | ``none`` | names of dai/sge/sora/esta/lrca (a list or ``"dai,sora"``; empty = none) -> the
    enabled parts."""
    if isinstance(parts, str):
        parts = parts.split(",")
    names = [p.strip() for p in parts if p.strip()]
    if names == ["all"]:
        return list(MASRA_PARTS)
    if names == ["none"]:
        return []
    unknown = sorted(set(names) - set(MASRA_PARTS))
    if unknown:
        raise MasraError(f"unknown MASRA part(s) {unknown}; use all, none or some of {', '.join(MASRA_PARTS)}",
                         field="parts")
    return names


def set_masra_parts(cfg: Config, parts: list[str] | str) -> Config:
    """Switch MASRA parts on by name (see :func:`parse_masra_parts`); the rest off."""
    parts = parse_masra_parts(parts)
    for name in MASRA_PARTS:
        getattr(cfg.model, name).enabled = name in parts
    return cfg
