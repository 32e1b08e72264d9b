"""`masra train --init-from RUN --output-dir RUN --force`: starting a run may never delete the run it starts
from. The same folder (or one inside the other) is refused before anything is removed."""

from __future__ import annotations

import shutil

import pytest

from masra.cli.main import main
from masra.config import save_config
from tiny_data import tiny_config


@pytest.fixture(scope="module")
def source_run(tiny_paths, tmp_path_factory):
    root = tmp_path_factory.mktemp("init_from_source")
    config = root / "tiny.yaml"
    save_config(tiny_config(tiny_paths, root / "unused", "train.epochs=1"), config)
    assert main(["train", "--config", str(config), "--output-dir", str(root / "run"), "--no-progress"]) == 0
    return root / "run"


def _listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize(("init_from", "output_dir"), [
    ("run", "run"),  # the same folder
    ("run/best", "run"),  # the checkpoint inside the new run's folder
    ("run/last", "run/last/again"),  # the new run inside the checkpoint
])
def test_a_run_never_starts_by_deleting_its_source(source_run, tmp_path, capsys, init_from, output_dir):
    run = shutil.copytree(source_run, tmp_path / "run")
    before = _listing(run)
    assert main(["train", "--init-from", str(tmp_path / init_from), "--output-dir", str(tmp_path / output_dir),
                 "--force", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "--init-from" in err and "--output-dir" in err and "same folder" in err
    assert _listing(run) == before  # nothing deleted, nothing added
