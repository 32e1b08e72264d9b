"""Every way a checkpoint folder can be damaged gives a MasraError naming the damaged file, never a traceback:
a ``state.pt`` refused by weights-only loading, truncated or garbage files, bad YAML, malformed JSON."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from masra.config import Config
from masra.errors import MasraError
from masra.train.init_from import load_initial_weights
from masra import checkpoint as ckpt


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(2, 3)).sum().backward()
    optimizer.step()
    return ckpt.save_checkpoint(tmp_path / "last", model=model, cfg=Config(), dims=ckpt.ModelDims(5, 4, None, [3]),
                                state={"optimizer": optimizer.state_dict(), "progress": {"epoch": 1}},
                                info={"epoch": 1})


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00\xff garbage \x89" * 50)


def _pickled_object(path: Path) -> None:
    torch.save({"format_version": 1, "payload": argparse.Namespace(run="rm -rf /")}, path)


def _not_a_mapping(path: Path) -> None:
    torch.save([1, 2, 3], path)


def _load_state(folder: Path) -> object:
    return ckpt.load_state(folder)


def _load_weights(folder: Path) -> object:
    return ckpt.load_weights(folder, torch.nn.Linear(3, 2))


def _init_from(folder: Path) -> object:
    return load_initial_weights(torch.nn.Linear(3, 2), folder)


def _read_info(folder: Path) -> object:
    return ckpt.read_checkpoint_info(folder)


CASES: list[tuple[str, str, Callable[[Path], None], Callable[[Path], object], str]] = [
    ("state refused by weights_only", ckpt.STATE_FILE, _pickled_object, _load_state, "weights_only"),
    ("state truncated", ckpt.STATE_FILE, _truncate, _load_state, "cannot read"),
    ("state garbage", ckpt.STATE_FILE, _garbage, _load_state, "weights_only"),
    ("state not a mapping", ckpt.STATE_FILE, _not_a_mapping, _load_state, "expected a mapping"),
    ("weights truncated", ckpt.WEIGHTS_FILE, _truncate, _load_weights, "cannot read"),
    ("weights garbage", ckpt.WEIGHTS_FILE, _garbage, _load_weights, "cannot read"),
    ("init-from weights truncated", ckpt.WEIGHTS_FILE, _truncate, _init_from, "cannot read"),
    ("bad yaml", ckpt.CONFIG_FILE, lambda p: p.write_text("model: [unclosed\n  bad: : yaml"), _read_info, "YAML"),
    ("yaml not a mapping", ckpt.CONFIG_FILE, lambda p: p.write_text("- a\n- b\n"), _read_info, "mapping"),
    ("yaml not utf-8", ckpt.CONFIG_FILE, _garbage, _read_info, "cannot read"),
    ("config missing", ckpt.CONFIG_FILE, lambda p: p.unlink(), _read_info, "not found"),
    ("info not a mapping", ckpt.INFO_FILE, lambda p: p.write_text("[1, 2]"), _read_info, "expected a JSON object"),
    ("info not utf-8", ckpt.INFO_FILE, _garbage, _read_info, "cannot read"),
]


@pytest.mark.parametrize("name,file,damage,load,message", CASES, ids=[c[0] for c in CASES])
def test_damaged_checkpoint_file_is_an_error_naming_it(
    folder: Path, name: str, file: str, damage: Callable[[Path], None], load: Callable[[Path], object], message: str
) -> None:
    damage(folder / file)
    with pytest.raises(MasraError) as info:
        load(folder)
    assert info.value.file == str(folder / file)
    assert message in info.value.message


def test_undamaged_checkpoint_still_loads(folder: Path) -> None:
    assert ckpt.load_state(folder)["progress"] == {"epoch": 1}
    ckpt.load_weights(folder, torch.nn.Linear(3, 2))
    assert ckpt.read_checkpoint_info(folder)[2]["epoch"] == 1
