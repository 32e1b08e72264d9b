"""The config system: defaults < YAML < overrides, and precise errors for mistakes."""

from pathlib import Path

import pytest
import yaml

from masra.config import (
    MASRA_PARTS,
    Config,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
    set_masra_parts,
)
from masra.errors import MasraError


def test_defaults_are_the_anchor_defaults() -> None:
    cfg = Config()
    assert (cfg.model.hidden_dim, cfg.model.num_queries, cfg.model.dec_layers) == (256, 10, 2)
    assert (cfg.loss.span, cfg.loss.giou, cfg.loss.label, cfg.loss.eos_coef) == (10.0, 1.0, 4.0, 0.1)
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.train.grad_clip) == (1e-4, 1e-4, 0.1)
    assert not any(getattr(cfg.model, part).enabled for part in MASRA_PARTS)


def test_yaml_then_overrides_win_in_order(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  dataset: tacos\n  clip_length: 2\nmodel:\n  sora:\n    band: 8\n")
    cfg = load_config(path, ["model.sora.band=4", "train.lr=2e-4", "data.v_feat_dirs=[a, b]"])
    assert cfg.data.dataset == "tacos"
    assert cfg.data.clip_length == 2.0 and isinstance(cfg.data.clip_length, float)
    assert cfg.model.sora.band == 4
    assert cfg.train.lr == pytest.approx(2e-4)
    assert cfg.data.v_feat_dirs == ["a", "b"]


def test_unknown_key_in_yaml_names_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  sora:\n    bandd: 8\n")
    with pytest.raises(MasraError) as err:
        load_config(path)
    assert str(path) in str(err.value) and "model.sora.bandd" in str(err.value)


@pytest.mark.parametrize(
    ("override", "field"),
    [("train.epochs=abc", "train.epochs"), ("model.dai.enabled=3", "model.dai.enabled"), ("nokey", None)],
)
def test_bad_overrides_are_rejected(override: str, field: str | None) -> None:
    with pytest.raises(MasraError) as err:
        apply_overrides(Config(), [override])
    if field:
        assert field in str(err.value)


def test_invalid_choice_is_rejected() -> None:
    with pytest.raises(MasraError, match="train.amp"):
        load_config(None, ["train.amp=fp8"])


def test_round_trip_through_dict_and_yaml(tmp_path: Path) -> None:
    cfg = load_config(None, ["model.esta.enabled=true", "data.max_v_l=-1"])
    assert config_to_dict(config_from_dict(config_to_dict(cfg))) == config_to_dict(cfg)
    save_config(cfg, tmp_path / "cfg.yaml")
    assert config_to_dict(load_config(tmp_path / "cfg.yaml")) == config_to_dict(cfg)


def test_set_masra_parts() -> None:
    cfg = set_masra_parts(Config(), "all")
    assert all(getattr(cfg.model, p).enabled for p in MASRA_PARTS)
    cfg = set_masra_parts(cfg, ["sora", "lrca"])
    assert [p for p in MASRA_PARTS if getattr(cfg.model, p).enabled] == ["sora", "lrca"]
    with pytest.raises(MasraError, match="unknown MASRA part"):
        set_masra_parts(cfg, ["sora", "magic"])


def test_error_message_locates_problem() -> None:
    err = MasraError("start 40 > end 30", file="val.jsonl", line=12, field="relevant_windows")
    assert str(err) == "val.jsonl:12: field 'relevant_windows': start 40 > end 30"


def test_loss_settings_written_under_their_old_names_still_load(tmp_path: Path) -> None:
    old = {"train": {"use_matcher": False}, "model": {"esta": {"clip_event_weight": 0.5},
                                                      "lrca": {"band": 4, "text_temperature": 0.2}}}
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(old))
    for cfg in (load_config(path), config_from_dict(old)):
        assert cfg.loss.use_matcher is False and cfg.loss.esta_clip_event_weight == 0.5
        assert (cfg.loss.lrca_band, cfg.loss.lrca_text_temperature) == (4, 0.2)
    assert old["train"] == {"use_matcher": False}  # the caller's dict is not changed
    with pytest.raises(MasraError, match="train.use_matcher"):
        apply_overrides(Config(), ["train.use_matcher=false"])  # new command lines use the new names


def test_model_dims_of_older_configs_are_ignored_when_loaded(tmp_path: Path) -> None:
    """The input dims live in the checkpoint (ModelDims); an old config.yaml that still holds them loads."""
    old = {"data": {"v_feat_dim": 2818, "t_feat_dim": 512, "max_v_l": 50}}
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(old))
    for cfg in (load_config(path), config_from_dict(old)):
        assert cfg.data.max_v_l == 50
        assert "v_feat_dim" not in config_to_dict(cfg)["data"] and "t_feat_dim" not in config_to_dict(cfg)["data"]
    assert old["data"]["v_feat_dim"] == 2818  # the caller's dict is not changed
    with pytest.raises(MasraError, match="data.v_feat_dim"):
        apply_overrides(Config(), ["data.v_feat_dim=7"])  # not a setting any more


@pytest.mark.parametrize(
    ("part", "key", "old_value", "new_value"),
    [("esta", "source", "memory", "input"), ("sge", "back_norm", "none", "layer_norm"),
     ("sora", "feed_forward", True, False)],
)
def test_a_saved_config_from_before_an_added_key_keeps_the_old_behaviour(part, key, old_value, new_value) -> None:
    """model.esta.source, model.sge.back_norm and model.sora.feed_forward were added with defaults that change
    what the part did before: a saved config without the key, the part on, gets the old value back; the part
    off, a partial user file or a new dump keep the new default."""
    saved = config_to_dict(set_masra_parts(Config(), "all"))
    del saved["model"][part][key]
    assert getattr(getattr(config_from_dict(saved).model, part), key) == old_value
    off = config_to_dict(Config())
    del off["model"][part][key]
    assert getattr(getattr(config_from_dict(off).model, part), key) == new_value
    assert getattr(getattr(config_from_dict({"model": {"hidden_dim": 64}}).model, part), key) == new_value
    fresh = config_from_dict(config_to_dict(set_masra_parts(Config(), "all")))
    assert getattr(getattr(fresh.model, part), key) == new_value


def test_a_saved_config_from_before_negative_pair_keeps_the_negative_pair_term() -> None:
    """loss.negative_pair was added with the old behaviour as its default (1: the term counts in full), so it needs no
    entry in ADDED_KEYS_OLD_VALUES: a saved config without it loads with 1."""
    saved = config_to_dict(Config())
    del saved["loss"]["negative_pair"]
    assert config_from_dict(saved).loss.negative_pair == 1.0
    assert config_from_dict(config_to_dict(load_config("cg_detr_youtube_highlights"))).loss.negative_pair == 0.0
