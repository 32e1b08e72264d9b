"""Packed feature store: one contiguous ``data.npy`` per feature source, memory-mapped at load time.

Layout of a store folder::

    data.npy       [total_rows, dim] float16|float32, every file's rows one after another
    index.json     {"dim": D, "dtype": "float32", "entries": {key: [offset, length], ...}}
    manifest.json  {"format": "masra-feature-store", "version": 1, "kind", "key", "count", "rows", "dim",
                    "dtype", "data_sha256", "index_sha256", "source"}

``pack_features`` builds the store in a hidden sibling folder and renames it into place only when complete
(the manifest is the last file written), so a killed pack never leaves a folder that loads.
Keys are file stems (``{vid}`` for video, ``qid{qid}`` / ``{qid}`` for text), so the loader looks entries
up by the same names it would use for files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from masra.data.arrays import check_rows, read_npy, read_npz_array
from masra.data.jsonl import write_json
from masra.errors import MasraError

STORE_FORMAT = "masra-feature-store"
STORE_VERSION = 1
MANIFEST = "manifest.json"
INDEX = "index.json"
DATA = "data.npy"
DEFAULT_KEYS = {"video": "features", "text": "last_hidden_state"}
FLOAT16_MAX = float(np.finfo(np.float16).max)


def is_store(folder: str | Path) -> bool:
    """True when ``folder`` is (or was meant to be) a packed store rather than a folder of npz files."""
    folder = Path(folder)
    return any((folder / name).exists() for name in (MANIFEST, INDEX, DATA))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class FeatureStore:
    """Read-only view of a packed store. The memory map opens lazily (and is dropped when pickled, so
    DataLoader workers each open their own)."""

    def __init__(self, folder: str | Path, *, verify: bool = False) -> None:
        self.folder = Path(folder)
        manifest_path = self.folder / MANIFEST
        if not manifest_path.is_file():
            raise MasraError("incomplete feature store: manifest.json missing (re-run `masra data pack`)", file=self.folder)
        try:
            self.manifest = json.loads(manifest_path.read_text())
            index = json.loads((self.folder / INDEX).read_text())
        except (OSError, ValueError) as err:  # ValueError: bad JSON or not UTF-8
            raise MasraError(f"unreadable feature store: {err}", file=self.folder) from None
        if (not isinstance(self.manifest, dict) or self.manifest.get("format") != STORE_FORMAT
                or self.manifest.get("version") != STORE_VERSION):
            raise MasraError(f"not a {STORE_FORMAT} v{STORE_VERSION} manifest", file=manifest_path)
        try:
            self.dim = int(index["dim"])
            self.dtype = str(index["dtype"])
            self.entries: dict[str, tuple[int, int]] = {k: (int(o), int(n)) for k, (o, n) in index["entries"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise MasraError(f"malformed index: {type(err).__name__}: {err}", file=self.folder / INDEX) from None
        data_path = self.folder / DATA
        if not data_path.is_file():
            raise MasraError("feature store data.npy missing", file=self.folder)
        if verify:
            for name, field in ((DATA, "data_sha256"), (INDEX, "index_sha256")):
                if _sha256(self.folder / name) != self.manifest.get(field):
                    raise MasraError("content hash does not match the manifest", file=self.folder / name, field=field)
        self._data: np.ndarray | None = None

    @property
    def data(self) -> np.ndarray:
        if self._data is None:
            path = self.folder / DATA
            try:
                self._data = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as err:
                raise MasraError(f"cannot memory-map the store: {err}", file=path) from None
            if self._data.ndim != 2 or self._data.shape[1] != self.dim or self._data.shape[0] != self.manifest.get("rows"):
                raise MasraError(f"data shape {self._data.shape} does not match the index/manifest", file=path)
        return self._data

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_data"] = None
        return state

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: str) -> np.ndarray | None:
        """The rows of ``key`` (a read-only memory-mapped view), or None when absent."""
        entry = self.entries.get(key)
        if entry is None:
            return None
        offset, length = entry
        return self.data[offset : offset + length]

    def location(self, key: str) -> str:
        """How errors name an entry: ``store/data.npy[key]``."""
        return f"{self.folder / DATA}[{key}]"


def replace_problem(out: Path, companions: Sequence[str] = ()) -> str | None:
    """Why ``out`` may not be replaced by a new store, or None: it is a store ``pack_features`` wrote, holding
    nothing else but the ``companions`` its caller wrote there (``masra features``: its extraction.json)."""
    if not out.is_dir():
        return "not a feature store (not a folder)"
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != STORE_FORMAT:
        return f"not a feature store (no {STORE_FORMAT} manifest.json)"
    foreign = sorted(path.name for path in out.iterdir() if path.name not in (MANIFEST, INDEX, DATA, *companions))
    if foreign:
        return f"the store also holds files masra did not write ({', '.join(foreign[:5])}); move them out before replacing it"
    return None


def _check_replaceable(out: Path, companions: Sequence[str]) -> None:
    """Refuse to let ``--force`` delete ``out`` unless it is a store ``pack_features`` wrote, holding nothing else."""
    problem = replace_problem(out, companions)
    if problem is not None:
        raise MasraError(f"{problem}; --force only replaces a store written by `masra data pack`", file=out)


def _source_files(src: Path) -> dict[str, Path]:
    """key (stem) -> file for every .npz / .npy file in ``src``; an npz wins over an npy of the same stem.
    Folders are skipped, so a store packed inside its own source folder is never read as a source."""
    files: dict[str, Path] = {}
    for suffix in ("*.npy", "*.npz"):
        files.update((path.stem, path) for path in sorted(src.glob(suffix)) if path.is_file())
    return dict(sorted(files.items()))


def _read_source(path: Path, key: str, *, allow_1d: bool) -> np.ndarray:
    """The checked float32 rows of one source file."""
    array = read_npz_array(path, key) if path.suffix == ".npz" else read_npy(path)
    return check_rows(array, path, field=key if path.suffix == ".npz" else None, allow_1d=allow_1d)


def pack_features(
    src: str | Path,
    out: str | Path,
    *,
    kind: str = "video",
    key: str | None = None,
    dtype: str = "float32",
    force: bool = False,
    companions: Sequence[str] = (),
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
) -> dict[str, Any]:
    """Pack every ``.npz`` (array ``key``) / ``.npy`` file of ``src`` into a store at ``out``; returns the manifest.
    ``force`` replaces a store at ``out`` that this function wrote (holding nothing else but ``companions``).

    ``kind`` picks the default npz key (video: ``features``, text: ``last_hidden_state``; text may be 1-D,
    stored as one row). ``progress`` wraps the file iteration (e.g. ``tqdm``).
    """
    src, out = Path(src), Path(out)
    if kind not in DEFAULT_KEYS:
        raise MasraError(f"unknown kind {kind!r}; video or text", field="kind")
    if dtype not in ("float16", "float32"):
        raise MasraError(f"unsupported dtype {dtype!r}; float16 or float32", field="dtype")
    key = key or DEFAULT_KEYS[kind]
    if not src.is_dir():
        raise MasraError("source folder not found", file=src)
    if is_store(src):
        raise MasraError("source is already a packed store", file=src)
    resolved_src, resolved_out = src.resolve(), out.resolve()
    if resolved_out == resolved_src or resolved_out in resolved_src.parents:
        raise MasraError(f"--out is or contains --src {src}; replacing it would delete the source files", file=out)
    if out.exists() or out.is_symlink():
        if not force:
            raise MasraError("output exists (pass --force to replace it)", file=out)
        _check_replaceable(out, companions)
    files = _source_files(src)
    if not files:
        raise MasraError("no .npz or .npy files in the source folder", file=src)
    wrap = progress or (lambda items: items)
    allow_1d = kind == "text"

    # Pass 1: shapes and checks, one file at a time (memory stays bounded by the largest file).
    lengths: dict[str, int] = {}
    dim: int | None = None
    for name, path in wrap(list(files.items())):
        array = _read_source(path, key, allow_1d=allow_1d)
        if dim is None:
            dim = array.shape[1]
        elif array.shape[1] != dim:
            raise MasraError(f"dim {array.shape[1]} differs from {dim} of the first file", file=path, field=key)
        if dtype == "float16" and float(np.abs(array).max()) > FLOAT16_MAX:
            raise MasraError("values exceed the float16 range; pack with --dtype float32", file=path, field=key)
        lengths[name] = array.shape[0]
    assert dim is not None
    total = sum(lengths.values())

    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.parent / f".{out.name}.partial-{os.getpid()}"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir()
    try:
        data = np.lib.format.open_memmap(partial / DATA, mode="w+", dtype=np.dtype(dtype), shape=(total, dim))
        entries: dict[str, list[int]] = {}
        offset = 0
        for name, path in files.items():
            array = _read_source(path, key, allow_1d=allow_1d)
            data[offset : offset + array.shape[0]] = array
            entries[name] = [offset, array.shape[0]]
            offset += array.shape[0]
        data.flush()
        del data
        write_json(partial / INDEX, {"dim": dim, "dtype": dtype, "entries": entries}, indent=None)
        manifest = {
            "format": STORE_FORMAT,
            "version": STORE_VERSION,
            "kind": kind,
            "key": key,
            "count": len(entries),
            "rows": total,
            "dim": dim,
            "dtype": dtype,
            "data_sha256": _sha256(partial / DATA),
            "index_sha256": _sha256(partial / INDEX),
            "source": str(src.resolve()),
        }
        write_json(partial / MANIFEST, manifest, indent=None)
        _replace_folder(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return manifest


def _replace_folder(new: Path, target: Path) -> None:
    """Move ``new`` to ``target``; an existing ``target`` is swapped out first and deleted afterwards."""
    if not target.exists():
        os.rename(new, target)
        return
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    os.rename(target, old)
    os.rename(new, target)
    if old.is_dir():
        shutil.rmtree(old)
    else:
        old.unlink()
