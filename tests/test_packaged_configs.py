"""Configs ship inside the package: resolved by name, layered with ``base:``, listed and printed by
``masra config``, and present in a wheel built from the repository."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from masra.cli.main import main
from masra.config import (MASRA_PARTS, backbone_layers, flatten_dotted, load_config, packaged_configs,
                          resolve_config_path)
from masra.errors import MasraError

REPO = Path(__file__).resolve().parents[1]


def test_packaged_name_and_file_path_resolve_to_the_same_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside the checkout: no configs/ folder around
    by_name = load_config("qvhighlights")
    by_file = load_config(packaged_configs()["qvhighlights"])
    assert dataclasses.asdict(by_name) == dataclasses.asdict(by_file)
    assert resolve_config_path("qvhighlights.yaml") == packaged_configs()["qvhighlights"]


def test_an_existing_file_wins_over_a_packaged_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "qvhighlights.yaml").write_text("name: mine\n")
    assert load_config("qvhighlights.yaml").name == "mine"
    assert load_config("qvhighlights").name == "qvhighlights"


def test_unknown_config_names_the_packaged_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MasraError, match="packaged: .*qvhighlights") as err:
        load_config("qvhighlight")
    assert "qvhighlight" in str(err.value)
    with pytest.raises(MasraError):
        load_config("sub/qvhighlights")  # a path that does not exist is not a packaged name


def test_masra_config_is_an_overlay_restating_no_default():
    text = packaged_configs()["masra_qvhighlights"].read_text()
    assert "base: qvhighlights" in text
    assert "train_path" not in text and "hidden_dim" not in text


def test_base_key_layers_files_relative_to_the_overlay(tmp_path):
    (tmp_path / "base.yaml").write_text("train:\n  lr: 2.0e-4\n  epochs: 7\n")
    (tmp_path / "over.yaml").write_text("base: base.yaml\ntrain:\n  epochs: 9\n")
    cfg = load_config(tmp_path / "over.yaml")
    assert (cfg.train.lr, cfg.train.epochs) == (pytest.approx(2e-4), 9)
    (tmp_path / "base.yaml").write_text("base: over.yaml\n")
    with pytest.raises(MasraError, match="cycle"):
        load_config(tmp_path / "over.yaml")


def test_a_list_of_bases_is_merged_in_order_before_the_file(tmp_path):
    (tmp_path / "first.yaml").write_text("train:\n  lr: 2.0e-4\n  epochs: 7\n")
    (tmp_path / "second.yaml").write_text("train:\n  epochs: 8\n  batch_size: 4\n")
    (tmp_path / "over.yaml").write_text("base: [first.yaml, second.yaml]\ntrain:\n  batch_size: 2\n")
    cfg = load_config(tmp_path / "over.yaml")
    assert (cfg.train.lr, cfg.train.epochs, cfg.train.batch_size) == (pytest.approx(2e-4), 8, 2)
    (tmp_path / "over.yaml").write_text("base: [first.yaml, 3]\n")
    with pytest.raises(MasraError, match="base"):
        load_config(tmp_path / "over.yaml")


@pytest.mark.parametrize("backbone", ["moment_detr", "cg_detr"])
def test_a_backbones_qvhighlights_config_is_qvhighlights_plus_its_backbone_layer(backbone):
    """The backbone's model and losses are written once (configs/backbones/), for the dataset config and for
    masra demo/ablate --backbone alike."""
    layered = dataclasses.asdict(load_config(["qvhighlights", backbone_layers()[backbone]]))
    packaged = dataclasses.asdict(load_config(f"{backbone}_qvhighlights"))
    assert packaged["model"]["backbone"] == backbone
    assert packaged.pop("name") == f"{backbone}_qvhighlights"
    assert packaged["train"].pop("output_dir") == f"runs/{backbone}_qvhighlights"
    layered.pop("name"), layered["train"].pop("output_dir")
    assert packaged == layered


# CG-DETR's settings on each dataset, as its scripts (cg_detr/scripts/<dataset>/train.sh, tvsum/train_tvsum.sh) and
# cg_detr/model.py set them; the YAML headers cite each. CG_DETR_OWN: the ones its dataset config lacks.
CG_DETR_SETTINGS = {
    "charades_sta": {"model.cg_detr.num_dummies": 45, "model.cg_detr.prompts": 2, "model.cg_detr.prompt_bank": 10,
                     "train.lr": 2e-4, "train.lr_drop": 400, "train.epochs": 200, "loss.saliency": 4.0,
                     "train.batch_size": 32, "train.eval_batch_size": 32, "data.max_v_l": -1, "data.max_q_l": 100,
                     "data.clip_length": 1.0, "loss.use_matcher": True, "loss.negative_pair": 1.0},
    "tacos": {"model.cg_detr.num_dummies": 50, "model.cg_detr.prompts": 2, "model.cg_detr.prompt_bank": 10,
              "train.lr": 2e-4, "train.lr_drop": 200, "train.epochs": 200, "loss.saliency": 4.0,
              "train.batch_size": 32, "train.eval_batch_size": 32, "data.max_v_l": -1, "data.max_q_l": 100,
              "data.clip_length": 2.0, "loss.use_matcher": True, "loss.negative_pair": 1.0},
    "tvsum": {"model.cg_detr.num_dummies": 3, "model.cg_detr.prompts": 1, "model.cg_detr.prompt_bank": 10,
              "train.lr": 1e-3, "train.lr_drop": 2000, "train.epochs": 1000, "loss.saliency": 1.0,
              "train.batch_size": 4, "data.max_v_l": 1000, "data.max_q_l": 100, "data.clip_length": 2.0,
              "loss.use_matcher": False, "loss.negative_pair": 1.0, "train.early_stop_patience": 0},
    "youtube_highlights": {"model.cg_detr.num_dummies": 1, "model.cg_detr.prompts": 1, "model.cg_detr.prompt_bank": 10,
                           "train.lr": 2e-4, "train.lr_drop": 2000, "train.epochs": 1000, "loss.saliency": 4.0,
                           "train.batch_size": 4, "data.max_v_l": 1000, "data.max_q_l": 100, "data.clip_length": 1.0,
                           "loss.use_matcher": False, "loss.negative_pair": 0.0, "train.early_stop_patience": 0},
}
CG_DETR_OWN = {
    "charades_sta": {"data.max_q_l", "model.cg_detr.prompts"},
    "tacos": {"model.cg_detr.num_dummies", "model.cg_detr.prompts"},
    "tvsum": {"model.cg_detr.num_dummies", "train.epochs"},
    "youtube_highlights": {"model.cg_detr.num_dummies", "loss.negative_pair"},
}


@pytest.mark.parametrize("dataset", CG_DETR_SETTINGS)
def test_cg_detrs_dataset_configs_hold_its_scripts_settings(dataset):
    """cg_detr_<dataset> is the dataset config + CG-DETR's layer + only what CG-DETR's script sets differently."""
    cfg = load_config(f"cg_detr_{dataset}")
    assert (cfg.name, cfg.model.backbone, cfg.data.dataset) == (f"cg_detr_{dataset}", "cg_detr", dataset)
    assert (cfg.model.enc_layers, cfg.model.dec_layers, cfg.model.t2v_layers) == (3, 3, 2)
    packaged = flatten_dotted(dataclasses.asdict(cfg))
    assert {key: packaged[key] for key in CG_DETR_SETTINGS[dataset]} == pytest.approx(CG_DETR_SETTINGS[dataset])
    layered = flatten_dotted(dataclasses.asdict(load_config([dataset, backbone_layers()["cg_detr"]])))
    changed = {key for key in packaged if packaged[key] != layered[key]}
    assert changed == CG_DETR_OWN[dataset] | {"name", "train.output_dir"}
    assert packaged["train.output_dir"].startswith(f"runs/cg_detr_{dataset}")


def test_moment_detr_on_another_dataset_is_the_dataset_config_with_the_layers_settings_set(capsys):
    """docs/model.md, "Backbones": Moment-DETR's repository has QVHighlights settings only; on another dataset its
    backbone layer's three settings, given with --set, make the same config as the layer itself."""
    sets = ["model.backbone=moment_detr", "model.activation=relu", "model.use_negative_pairs=false"]
    for dataset in ("charades_sta", "tacos", "tvsum", "youtube_highlights"):
        with_sets = dataclasses.asdict(load_config(dataset, sets))
        assert with_sets == dataclasses.asdict(load_config([dataset, backbone_layers()["moment_detr"]]))
        assert with_sets["model"]["backbone"] == "moment_detr"
    assert main(["config", "show", "charades_sta", *[arg for s in sets for arg in ("--set", s)]]) == 0
    shown = capsys.readouterr().out
    assert "backbone: moment_detr" in shown and "use_negative_pairs: false" in shown

def test_config_list_and_show(capsys):
    assert main(["config", "list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == list(packaged_configs())
    assert main(["config", "show", "masra_qvhighlights", "--set", "train.epochs=3"]) == 0
    shown = capsys.readouterr().out
    assert "epochs: 3" in shown and "train_path: data/highlight_train_release.jsonl" in shown
    assert main(["config", "show", "masra_qvhighlights", "--file"]) == 0
    assert capsys.readouterr().out == packaged_configs()["masra_qvhighlights"].read_text()
    assert main(["config", "show", "nope"]) == 1
    assert "packaged:" in capsys.readouterr().err


def test_masra_config_is_the_qvhighlights_config_with_the_parts_and_priors():
    base = dataclasses.asdict(load_config("qvhighlights"))
    masra = dataclasses.asdict(load_config("masra_qvhighlights"))
    for part in MASRA_PARTS:
        assert masra["model"][part]["enabled"] and not base["model"][part]["enabled"]
        masra["model"][part]["enabled"] = False
    assert masra["data"].pop("prior_dir") and base["data"].pop("prior_dir") is None
    for cfg in (base, masra):
        cfg.pop("name")
        cfg["train"].pop("output_dir")
    assert masra == base


@pytest.mark.slow
def test_a_wheel_built_from_the_repository_contains_the_configs_and_loads_them(tmp_path):
    source = tmp_path / "source"  # a copy, so the build writes no build/ or egg-info into the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(source)], check=True)
    (wheel,) = (tmp_path / "dist").glob("masra-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"masra/configs/{path.name}" for path in packaged_configs().values()} <= names
    assert {f"masra/configs/backbones/{path.name}" for path in backbone_layers().values()} <= names
    # Installed from the wheel, run outside the checkout: --config names resolve inside the installed package.
    installed = tmp_path / "installed"
    zipfile.ZipFile(wheel).extractall(installed)
    script = ("from masra.config import load_config, packaged_configs; import masra; "
              "cfg = load_config('masra_qvhighlights'); "
              "print(masra.__file__, cfg.model.sora.enabled, cfg.data.train_path, len(packaged_configs()))")
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env={"PYTHONPATH": str(installed)},
                         check=True, capture_output=True, text=True).stdout.split()
    assert out[0].startswith(str(installed))
    assert out[1:] == ["True", "data/highlight_train_release.jsonl", str(len(packaged_configs()))]
