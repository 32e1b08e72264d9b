"""masra export: the ONNX graph on onnxruntime against the torch model (every backbone, MASRA parts off and on),
export.json, and the output folder rules."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from masra.cli.main import main
from masra.errors import MasraError
from masra.export import ExportedForward, example_inputs
from masra.model import build_model
from masra.model.feature_inference import InputSpec
from masra.runtime.bundle import INFO_FILE, INPUT_NAMES, MODEL_FILE, OUTPUT_NAMES, FeatureFiles, read_export
from masra.runtime.session import open_session
from masra.train.seeding import seed_everything
from runtime.conftest import ENCODER, EXPORTS, FINGERPRINT, Exported, tiny_checkpoint

# The session's exports are made in the first test that uses them: torch.export of the MASRA model takes
# minutes on a loaded 2-core machine, more than pytest's default timeout (pyproject.toml).
pytestmark = pytest.mark.timeout(1800)

TOLERANCE = 1e-4
CLIPS, TOKENS = [1, 10, 75, 300], [1, 32]  # 75: the runs' max_v_l


def assert_the_graph_gives_the_torch_outputs(exported: Exported, clips: int, tokens: int) -> None:
    """The export's graph on onnxruntime against the torch forward, alone and in a padded batch (a shorter video
    and query after it): every output's shape, values within TOLERANCE."""
    session = open_session(exported.export / MODEL_FILE)
    forward = ExportedForward(exported.model).eval()
    batches = [([clips], [tokens])]
    if clips > 1 or tokens > 1:
        batches.append(([clips, max(1, clips // 3)], [tokens, max(1, tokens // 4)]))
    for lengths, words in batches:
        inputs = example_inputs(exported.dims.v_feat_dim, exported.dims.t_feat_dim, lengths, words,
                                seed=clips + tokens)
        with torch.inference_mode():
            expected = forward(*(torch.from_numpy(a) for a in inputs))
        got = session.run(list(OUTPUT_NAMES), dict(zip(INPUT_NAMES, inputs)))
        for name, e, g in zip(OUTPUT_NAMES, expected, got):
            assert g.shape == tuple(e.shape), name
            np.testing.assert_allclose(g, e.numpy(), rtol=0, atol=TOLERANCE, err_msg=f"{name} {lengths} {words}")


@pytest.mark.parametrize("clips", CLIPS)
@pytest.mark.parametrize("tokens", TOKENS)
def test_the_graph_gives_the_torch_outputs(exported, clips, tokens):
    """300 clips also crosses SORA's switch from its dense to its banded path in torch (the graph always runs
    the dense one)."""
    assert_the_graph_gives_the_torch_outputs(exported, clips, tokens)


@pytest.mark.parametrize("clips", CLIPS)
@pytest.mark.parametrize("tokens", TOKENS)
def test_a_trained_run_gives_the_torch_outputs(trained, clips, tokens):
    """Trained weights (learned β, relevance weight, slot temperature, codebook, an opened SGE gate: see the test
    below); its SORA band is 4 clips, so 75 and 300 clips run torch's banded path."""
    assert_the_graph_gives_the_torch_outputs(trained, clips, tokens)


def test_training_moved_the_learned_parameters(trained):
    """The trained run's parameters against its initialisation (the trainer's: seeded with train.seed, then built):
    every one moved, and by a few optimizer steps (so the initialisation is the trainer's), the MASRA parts' own
    learned scalars and tables among them."""
    seed_everything(trained.cfg.train.seed)
    initial, _ = build_model(trained.cfg, trained.dims.v_feat_dim, trained.dims.t_feat_dim, trained.dims.semantic_dim)
    start = dict(initial.named_parameters())
    moved = {name: float((param.detach() - start[name].detach()).abs().max())
             for name, param in trained.model.named_parameters()}
    assert set(moved) == set(start)
    assert all(0 < change < 0.05 for change in moved.values()), moved
    learned = {"baseline": [], "masra": ["sora", "beta", "dai", "relevance_weight", "log_slot_temperature",
                                         "codebook", "sge", "gate.weight", "esta", "lrca"]}[trained.name.split("-")[1]]
    for word in learned:
        assert any(word in name and change > 1e-4 for name, change in moved.items()), word
    parts = [part.name for part in trained.model.parts]
    assert parts == (["dai", "sora", "sge", "esta", "lrca"] if learned else [])


def test_export_json_carries_what_inference_needs(exported):
    model_file, info = read_export(exported.export)
    assert model_file == exported.export / MODEL_FILE
    assert info.inputs == InputSpec.of(exported.cfg, exported.dims)
    assert info.postprocess.nms_threshold == exported.cfg.eval.nms_threshold
    assert info.postprocess.postprocess == exported.cfg.eval.postprocess
    _, masra, converted = EXPORTS[exported.name]
    recorded = (None, None) if converted else (ENCODER, FINGERPRINT)  # an anchor's checkpoint records no encoder
    assert (info.feature_encoder, info.feature_encoder_fingerprint) == recorded
    assert info.parts == (["dai", "sora", "sge", "esta", "lrca"] if masra else [])
    assert info.opset >= 18
    assert sorted(p.name for p in exported.export.iterdir()) == sorted([MODEL_FILE, INFO_FILE])


def test_a_damaged_export_json_names_the_field(exported, tmp_path):
    folder = tmp_path / "copy"
    folder.mkdir()
    (folder / MODEL_FILE).write_bytes((exported.export / MODEL_FILE).read_bytes())
    raw = json.loads((exported.export / INFO_FILE).read_text())
    del raw["inputs"]["clip_length"]
    (folder / INFO_FILE).write_text(json.dumps(raw))
    with pytest.raises(MasraError) as err:
        read_export(folder)
    assert err.value.field == "inputs"


def test_export_refuses_a_folder_it_did_not_write(tmp_path, capsys):
    tiny_checkpoint(tmp_path / "ckpt", masra=False)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(["export", "--checkpoint", str(tmp_path / "ckpt"), "--out", str(out), "--force"]) != 0
    assert "not a masra export" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "keep me"


def test_export_replaces_its_own_export_only_with_force(exported, tmp_path, capsys):
    out = tmp_path / "again"
    out.mkdir()
    for name in (MODEL_FILE, INFO_FILE):
        (out / name).write_bytes((exported.export / name).read_bytes())
    assert main(["export", "--checkpoint", str(exported.checkpoint), "--out", str(out)]) != 0
    assert "pass --force" in capsys.readouterr().err
    assert read_export(out)[1].checkpoint == read_export(exported.export)[1].checkpoint
