"""``extraction.json``: which encoder made the features of a folder, so training can record it in the
checkpoint metadata (``ModelDims.feature_encoder``) and ``predict --video`` can refuse a different encoder.
``masra features`` (masra.features.extract) writes it; training reads it, so it lives in the library.

    {"kind": "video" | "text", "encoder": "clip:NAME_OR_PATH", "fingerprint": "<16 hex>",
     "dim": D, "clip_length": 2.0 (video), "frame_size": 224 (video)}
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from masra.config import DataConfig
from masra.data.jsonl import write_json
from masra.errors import MasraError

INFO_FILE = "extraction.json"


@dataclass
class ExtractionInfo:
    kind: str  # "video" or "text"
    encoder: str
    fingerprint: str
    dim: int
    clip_length: float | None = None
    frame_size: int | None = None


def write_extraction_info(folder: str | Path, info: ExtractionInfo) -> None:
    write_json(Path(folder) / INFO_FILE, asdict(info))


def read_extraction_info(folder: str | Path) -> ExtractionInfo | None:
    """The folder's extraction.json, None when it has none (features made outside masra)."""
    path = Path(folder) / INFO_FILE
    if not path.is_file():
        return None
    try:
        return ExtractionInfo(**json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, TypeError) as err:
        raise MasraError(f"unreadable extraction record: {err}", file=path) from None


def check_same_encoder(folder: str | Path, encoder: str, fingerprint: str, kind: str) -> None:
    """Refuse to add features of another encoder (or kind) to a folder that already holds some."""
    info = read_extraction_info(folder)
    if info is not None and (info.fingerprint != fingerprint or info.kind != kind):
        raise MasraError(f"folder holds {info.kind} features of {info.encoder} (fingerprint {info.fingerprint}); "
                         f"these are {kind} features of {encoder} (fingerprint {fingerprint}): use another --out",
                         file=Path(folder) / INFO_FILE)


def feature_encoder_record(data: DataConfig) -> tuple[str | None, str | None]:
    """(encoder spec, weights fingerprint) of the configured feature folders' extraction records, (None, None)
    when none has one; folders of different encoders, or a clip length other than ``data.clip_length``, are
    errors naming the file."""
    folders = [*data.v_feat_dirs, *([data.t_feat_dir] if data.t_feat_dir else [])]
    record: tuple[str | None, str | None] = (None, None)
    for folder in folders:
        info = read_extraction_info(folder)
        if info is None:
            continue
        where = Path(folder) / INFO_FILE
        if info.clip_length is not None and abs(info.clip_length - data.clip_length) > 1e-6:
            raise MasraError(f"features of {info.clip_length} s clips; data.clip_length is {data.clip_length}",
                             file=where, field="clip_length")
        if record[1] is not None and info.fingerprint != record[1]:
            raise MasraError(f"features of {info.encoder} (fingerprint {info.fingerprint}) mixed with features of "
                             f"{record[0]} ({record[1]})", file=where, field="fingerprint")
        record = (info.encoder, info.fingerprint)
    return record
