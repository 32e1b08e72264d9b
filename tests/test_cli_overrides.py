"""One config-override syntax for every command that reads a config: ``--set key.sub=value``, repeatable."""

from __future__ import annotations

import pytest

from masra.cli.main import build_parser

COMMANDS = {
    "train": ["train", "--config", "qvhighlights"],
    "predict": ["predict", "--checkpoint", "ckpt", "--split", "val"],
    "evaluate": ["evaluate", "--checkpoint", "ckpt", "--out", "m.json"],
    "demo": ["demo", "--out", "d"],
    "ablate": ["ablate", "--out", "d", "--seeds", "0", "1"],
    "config show": ["config", "show", "qvhighlights"],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_takes_repeated_set_overrides(command):
    args = build_parser().parse_args([*COMMANDS[command], "--set", "train.lr=2e-4", "--set", "model.sora.band=4"])
    assert args.overrides == ["train.lr=2e-4", "model.sora.band=4"]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_bare_override_is_not_taken_silently(command):
    with pytest.raises(SystemExit):
        build_parser().parse_args([*COMMANDS[command], "train.lr=2e-4"])
