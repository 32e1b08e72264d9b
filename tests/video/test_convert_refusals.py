"""`masra convert qd-detr` and `moment-detr` on crafted checkpoints: every bad file, option or output path is one
clear line naming the field, refused before any model is allocated; a pickle exploit is named and never executed."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
from video_assets import QD_DETR_FIXTURE

from masra.cli.main import main
from masra.convert.moment_detr import load_moment_detr_checkpoint
from masra.convert.qd_detr import load_qd_detr_checkpoint

# format -> (a checkpoint made by the anchor's own code, its loader)
ANCHORS = {
    "qd-detr": (QD_DETR_FIXTURE / "model_best.ckpt", load_qd_detr_checkpoint),
    "moment-detr": (Path(__file__).resolve().parents[1] / "fixtures" / "moment_detr" / "model_best.ckpt",
                    load_moment_detr_checkpoint),
}


@pytest.fixture(params=ANCHORS)
def anchor(request) -> str:
    return request.param


def convert(capsys, anchor, checkpoint, out) -> str:
    """The one error line of a refused conversion; nothing is written."""
    assert main(["convert", anchor, str(checkpoint), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("masra convert: error: ") and err.count("\n") == 1, err
    assert "\x1b[" not in err and "Traceback" not in err
    return err


@pytest.fixture
def no_model_built(monkeypatch):
    """Any refusal must come before a model is allocated (a crafted size would take the memory first); a
    model on the meta device (names and shapes, no memory) may be built."""
    import masra.model

    build = masra.model.build_model

    def only_on_meta(*args, **kwargs):
        if torch.get_default_device().type != "meta":
            raise AssertionError("a model was allocated before the checkpoint was checked")
        return build(*args, **kwargs)

    monkeypatch.setattr(masra.model, "build_model", only_on_meta)


def load(anchor):
    path, loader = ANCHORS[anchor]
    return loader(path)


def crafted(anchor, tmp_path, name="crafted.ckpt", model=None, **opt):
    checkpoint = load(anchor)
    for key, value in opt.items():
        setattr(checkpoint["opt"], key, value)
    if model is not None:
        checkpoint["model"] = model
    torch.save(checkpoint, tmp_path / name)
    return tmp_path / name


@pytest.mark.parametrize(("opt", "field", "message"), [
    ({"ctx_mode": 5}, "opt.ctx_mode", "5 is not one of video, video_tef"),
    ({"clip_length": "abc"}, "opt.clip_length", "'abc' is not a number"),
    ({"clip_length": 0}, "opt.clip_length", "0 is out of range"),
    ({"max_v_l": -5}, "opt.max_v_l", "-5 is out of range"),
    ({"dropout": math.nan}, "opt.dropout", "nan is not a finite number"),
    ({"dset_name": ["hl"]}, "opt.dset_name", "['hl'] is not one of hl, charadesSTA"),
    ({"num_queries": 10**9}, "opt.num_queries", "1000000000 is out of range"),
    ({"num_queries": 5.0}, "opt.num_queries", "5.0 is not an integer"),
    ({"dim_feedforward": 10**10}, "opt.dim_feedforward", "10000000000 is out of range"),
    ({"aux_loss": "yes"}, "opt.aux_loss", "'yes' is not true or false"),
    ({"v_feat_dirs": 7}, "opt.v_feat_dirs", "7 is not a list of folder names"),
    ({"num_queries": 5000}, "model", "tensors do not match masra's model"),  # within the cap, not the weights'
])
def test_bad_options_are_refused_before_any_allocation(capsys, tmp_path, no_model_built, anchor, opt, field, message):
    err = convert(capsys, anchor, crafted(anchor, tmp_path, **opt), tmp_path / "run")
    assert f"field '{field}': {message}" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("opt", "field", "message"), [
    ({"contrastive_align_loss": 1}, "opt.contrastive_align_loss", "1 is not true or false"),
    ({"contrastive_hdim": 10**9}, "opt.contrastive_hdim", "1000000000 is out of range"),
    ({"contrastive_align_loss_coef": -1.0}, "opt.contrastive_align_loss_coef", "-1.0 is out of range"),
    ({"temperature": 0.0}, "opt.temperature", "0.0 is out of range"),
    ({"temperature": math.inf}, "opt.temperature", "inf is not a finite number"),
])
def test_bad_moment_detr_options_are_refused_before_any_allocation(capsys, tmp_path, no_model_built, opt, field,
                                                                    message):
    err = convert(capsys, "moment-detr", crafted("moment-detr", tmp_path, **opt), tmp_path / "run")
    assert f"field '{field}': {message}" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("model", "message"), [
    ([1, 2], "'model' has type list, expected a dict of tensors"),
    ({"input_txt_proj.0.LayerNorm.weight": 3},
     "'model' entry 'input_txt_proj.0.LayerNorm.weight' has type int, expected a tensor"),
])
def test_a_model_that_is_not_tensors_is_refused(capsys, tmp_path, no_model_built, anchor, model, message):
    assert message in convert(capsys, anchor, crafted(anchor, tmp_path, model=model), tmp_path / "run")


def test_an_empty_file_is_refused(capsys, tmp_path, anchor):
    (tmp_path / "empty.ckpt").write_bytes(b"")
    err = convert(capsys, anchor, tmp_path / "empty.ckpt", tmp_path / "run")
    assert err == f"masra convert: error: {tmp_path / 'empty.ckpt'}: the file is empty\n"


class RunsCode:
    """A pickle that runs code on loading: ``__reduce__`` returns ``(function, args)``."""

    def __init__(self, function, argument) -> None:
        self.function, self.argument = function, argument

    def __reduce__(self):
        return self.function, (self.argument,)


@pytest.mark.parametrize(("function", "name"), [(exec, "builtins.exec"), (os.system, f"{os.name}.system"),
                                                (eval, "builtins.eval")])
def test_a_pickle_exploit_is_named_and_never_run(capsys, tmp_path, anchor, function, name):
    marker = tmp_path / "ran"
    code = {exec: f"open({str(marker)!r}, 'w').close()", eval: f"open({str(marker)!r}, 'w').close()",
            os.system: f"touch {marker}"}[function]
    checkpoint = load(anchor)
    checkpoint["model"]["input_txt_proj.0.LayerNorm.weight"] = RunsCode(function, code)
    torch.save(checkpoint, tmp_path / "exploit.ckpt")
    err = convert(capsys, anchor, tmp_path / "exploit.ckpt", tmp_path / "run")
    assert f"refused: loading it would call {name}" in err
    assert "weights_only=False" not in err and "weights_only` set to `False" not in err
    assert not marker.exists()


def test_out_must_be_a_real_folder(capsys, tmp_path, anchor):
    ckpt = ANCHORS[anchor][0]
    (tmp_path / "notes.txt").write_text("not masra's")
    err = convert(capsys, anchor, ckpt, tmp_path / "notes.txt")
    assert "exists and is not a folder" in err and (tmp_path / "notes.txt").read_text() == "not masra's"
    target = tmp_path / "target"
    assert main(["convert", anchor, str(ckpt), "--out", str(target)]) == 0  # a converted run...
    (tmp_path / "link").symlink_to(target)
    for force in ([], ["--force"]):  # ...is not replaced through a symlink to it
        assert main(["convert", anchor, str(ckpt), "--out", str(tmp_path / "link"), *force]) == 1
        assert "is a symlink" in capsys.readouterr().err
    assert (target / "last" / "model.safetensors").is_file()
