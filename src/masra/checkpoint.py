"""Checkpoint folders: ``model.safetensors`` (weights), ``state.pt`` (everything needed to resume, plain
containers only), ``config.yaml`` (the resolved config) and ``checkpoint.json`` (model dims, epoch, metrics).

Folders are replaced atomically: the new one is written under a temporary name, fsynced, and renamed into
place. A crash between the two renames leaves ``NAME.old``, which :func:`find_checkpoint` falls back to.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_model

from masra.config import Config, load_config, save_config
from masra.errors import MasraError

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "state.pt"
CONFIG_FILE = "config.yaml"
INFO_FILE = "checkpoint.json"


@dataclass
class ModelDims:
    """What ``build_model`` needs besides the config; stored with the weights so inference can rebuild.

    The one home of the model's input dims. Training measures them from the data when it starts
    (``GroundingDataset.feature_dims``), ``masra convert`` reads them from the converted weights; both store
    them here, in ``checkpoint.json``, and never in the config (an older config's ``data.v_feat_dim`` /
    ``data.t_feat_dim`` are ignored when it is loaded: ``config.REMOVED_KEYS``). Inference checks the features
    it is given against them.
    """

    v_feat_dim: int
    t_feat_dim: int
    semantic_dim: int | None = None
    # Dims of each video feature source before TEF, in concatenation order (for per-source normalisation).
    v_source_dims: list[int] | None = None
    # The encoder that made the training features ("clip:NAME_OR_PATH") and its weights fingerprint, from the
    # feature folders' extraction.json (masra features); None when unknown. Checked by predict --video.
    feature_encoder: str | None = None
    feature_encoder_fingerprint: str | None = None


def _fsync_file(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if hasattr(model, "module") else model


def save_checkpoint(
    folder: str | Path,
    *,
    model: torch.nn.Module,
    cfg: Config,
    dims: ModelDims,
    state: dict[str, Any],
    info: dict[str, Any] | None = None,
    extra_files: dict[str, Path] | None = None,
) -> Path:
    """Write a complete checkpoint folder atomically.

    ``state`` must hold plain containers (tensors, lists, dicts, numbers, strings) so that it loads with
    ``weights_only=True``; ``extra_files`` are copied in (e.g. the predictions and metrics of this epoch).
    """
    folder = Path(folder)
    parent = folder.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f"{folder.name}.tmp"
    old = parent / f"{folder.name}.old"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_model(unwrap(model), str(tmp / WEIGHTS_FILE), metadata={"format": "masra", "version": str(FORMAT_VERSION)})
    torch.save({"format_version": FORMAT_VERSION, **state}, tmp / STATE_FILE)
    save_config(cfg, tmp / CONFIG_FILE)
    meta = {"format_version": FORMAT_VERSION, "dims": dims.__dict__, **(info or {})}
    (tmp / INFO_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    for name, src in (extra_files or {}).items():
        shutil.copyfile(src, tmp / name)
    for path in tmp.iterdir():
        _fsync_file(path)
    _fsync_dir(tmp)
    if folder.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(folder, old)
    os.replace(tmp, folder)
    _fsync_dir(parent)
    if old.exists():
        shutil.rmtree(old)
    return folder


def remove_swap_leftovers(folder: str | Path) -> None:
    """Delete ``NAME.old`` and ``NAME.tmp`` once ``NAME`` itself is complete: they are what a kill after the
    second rename (or while writing the next checkpoint) left behind. While ``NAME`` is missing, ``NAME.old``
    is the only complete copy and is kept."""
    folder = Path(folder)
    if not ((folder / WEIGHTS_FILE).is_file() and (folder / INFO_FILE).is_file() and (folder / STATE_FILE).is_file()):
        return
    for leftover in (folder.with_name(folder.name + ".old"), folder.with_name(folder.name + ".tmp")):
        if leftover.is_dir():
            shutil.rmtree(leftover)


def find_checkpoint(path: str | Path) -> Path:
    """Resolve a checkpoint folder: the folder itself, ``RUN/last``, or the ``.old`` copy an interrupted swap left."""
    path = Path(path)
    if path.is_file() and path.name == WEIGHTS_FILE:
        path = path.parent
    candidates = [path, path / "last"]
    candidates += [p.with_name(p.name + ".old") for p in candidates]
    for candidate in candidates:
        if (candidate / WEIGHTS_FILE).is_file() and (candidate / INFO_FILE).is_file():
            return candidate
    raise MasraError(f"no checkpoint here (expected {WEIGHTS_FILE} and {INFO_FILE})", file=path)


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise MasraError("file not found (incomplete checkpoint)", file=path)
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise MasraError(f"cannot read: {err}", file=path) from None


def read_checkpoint_info(folder: str | Path) -> tuple[Config, ModelDims, dict[str, Any]]:
    """The config, the model dims and the info dict of a checkpoint folder (no tensors loaded)."""
    folder = find_checkpoint(folder)
    info_path = folder / INFO_FILE
    try:
        info = json.loads(_read_text(info_path))
    except json.JSONDecodeError as err:
        raise MasraError(f"invalid JSON: {err.msg}", file=info_path, line=err.lineno) from None
    if not isinstance(info, dict):
        raise MasraError(f"expected a JSON object, got {type(info).__name__}", file=info_path)
    if info.get("format_version") != FORMAT_VERSION:
        raise MasraError(f"unsupported checkpoint format {info.get('format_version')!r}", file=info_path,
                         field="format_version")
    config_path = folder / CONFIG_FILE
    _read_text(config_path)  # a missing or unreadable file is reported as part of the checkpoint
    cfg = load_config(config_path)  # YAML and config errors name the file
    try:
        dims = ModelDims(**info["dims"])
    except (KeyError, TypeError) as err:
        raise MasraError(f"bad model dims: {err}", file=info_path, field="dims") from None
    return cfg, dims, info


def _unreadable_weights(path: Path, err: Exception) -> MasraError:
    return MasraError(f"cannot read the weights (truncated or corrupt file?): {err}", file=path)


def read_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint's ``model.safetensors`` by name; a damaged file is a MasraError naming it."""
    path = find_checkpoint(folder) / WEIGHTS_FILE
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise _unreadable_weights(path, err) from None


def load_weights(folder: str | Path, model: torch.nn.Module) -> None:
    """Load ``model.safetensors`` into ``model`` (strict: every parameter must match by name and shape)."""
    path = find_checkpoint(folder) / WEIGHTS_FILE
    try:
        load_model(unwrap(model), str(path), strict=True)
    except (SafetensorError, OSError) as err:
        raise _unreadable_weights(path, err) from None
    except RuntimeError as err:
        raise MasraError(f"weights do not match the model built from the config: {err}", file=path) from None


def load_state(folder: str | Path) -> dict[str, Any]:
    """The resume state (``state.pt``), loaded with ``weights_only=True``; a damaged or refused file is a
    MasraError naming it."""
    path = find_checkpoint(folder) / STATE_FILE
    if not path.is_file():
        raise MasraError("checkpoint has no resume state", file=path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise MasraError("refused by torch.load(weights_only=True): corrupt, or it holds objects other than "
                         "tensors and plain containers (masra never writes those); not loaded", file=path) from None
    except Exception as err:  # noqa: BLE001 - a truncated or corrupt archive fails in many ways (RuntimeError, EOFError, ...)
        first_line = str(err).splitlines()[0] if str(err) else ""
        raise MasraError(f"cannot read (truncated or corrupt file?): {type(err).__name__}: {first_line}",
                         file=path) from None
    if not isinstance(state, dict):
        raise MasraError(f"expected a mapping, got {type(state).__name__}", file=path)
    if state.get("format_version") != FORMAT_VERSION:
        raise MasraError(f"unsupported state format {state.get('format_version')!r}", file=path)
    return state
