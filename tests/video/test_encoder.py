"""The CLIP encoder against the transformers model's own outputs, loaded through from_pretrained."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from masra.errors import MasraError
from masra.features.encoder import ClipEncoder, EncoderSpec


@pytest.fixture(scope="module")
def loaded(tiny_clip):
    from transformers import CLIPModel, CLIPTokenizer

    return ClipEncoder.load(f"clip:{tiny_clip}"), CLIPModel.from_pretrained(tiny_clip).eval(), \
        CLIPTokenizer.from_pretrained(tiny_clip)


def test_query_features_are_the_text_towers_states_from_sot_to_eot(loaded):
    encoder, model, tokenizer = loaded
    texts = ["a chef cuts the pizza", "dog", "two people talk in a restaurant at night"]
    features = encoder.encode_queries(texts)
    for text, feats in zip(texts, features):
        ids = tokenizer(text, return_tensors="pt")["input_ids"]  # unpadded: SOT ... EOT
        assert ids[0, 0] == tokenizer.bos_token_id and ids[0, -1] == tokenizer.eos_token_id
        with torch.no_grad():
            states = model.text_model(input_ids=ids).last_hidden_state[0]  # after the final LayerNorm
            pooled = model.get_text_features(input_ids=ids)
        pooled = pooled.pooler_output if hasattr(pooled, "pooler_output") else pooled
        np.testing.assert_allclose(feats.last_hidden_state, states.numpy(), atol=1e-5)
        np.testing.assert_allclose(feats.pooler_output, pooled[0].numpy(), atol=1e-5)
        assert feats.last_hidden_state.shape == (ids.shape[1], 24) and feats.pooler_output.shape == (16,)


def test_frame_features_are_image_embeddings_with_clip_normalisation(loaded):
    from transformers import CLIPImageProcessor

    encoder, model, _ = loaded
    frames = np.random.default_rng(0).integers(0, 256, size=(3, 224, 224, 3), dtype=np.uint8)
    processor = CLIPImageProcessor(do_resize=False, do_center_crop=False)  # OpenAI CLIP's mean/std, rescale 1/255
    pixels = processor(images=list(frames), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        expected = model.get_image_features(pixel_values=pixels)
    expected = expected.pooler_output if hasattr(expected, "pooler_output") else expected
    np.testing.assert_allclose(encoder.encode_frames(frames), expected.numpy(), atol=1e-5)


def test_fingerprint_follows_the_weights_not_the_path(tiny_clip, tmp_path):
    import shutil

    from tiny_clip import make_tiny_clip

    copy = ClipEncoder.load(f"clip:{shutil.copytree(tiny_clip, tmp_path / 'copy')}")
    other = ClipEncoder.load(f"clip:{make_tiny_clip(tmp_path / 'other', seed=3)}")
    assert copy.fingerprint == ClipEncoder.load(f"clip:{tiny_clip}").fingerprint != other.fingerprint


def test_bad_specs_and_missing_weights_say_what_to_do(tmp_path):
    with pytest.raises(MasraError, match="KIND:NAME_OR_PATH"):
        EncoderSpec.parse("openai/clip-vit-base-patch32")
    with pytest.raises(MasraError, match="unknown encoder kind 'siglip'"):
        EncoderSpec.parse("siglip:google/x")
    with pytest.raises(MasraError, match="no such folder; it should hold the CLIP model written by save_pretrained"):
        ClipEncoder.load(f"clip:{tmp_path / 'empty'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MasraError, match="place the model in a local folder .*--encoder clip:DIR"):
        ClipEncoder.load(f"clip:{tmp_path / 'empty'}")
    with pytest.raises(MasraError, match="save_pretrained"):
        ClipEncoder.load("clip:openai/clip-vit-base-patch32-not-cached")


@pytest.mark.parametrize("keep", [0.5, 0.999])  # cut in the header's reach, or in the last tensor
def test_a_cut_off_weights_file_is_a_one_line_error(tiny_clip, tmp_path, keep, capsys):
    import shutil

    from masra.cli.main import main

    copy = tmp_path / "clip"
    shutil.copytree(tiny_clip, copy)
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: int(weights.stat().st_size * keep)])
    with pytest.raises(MasraError, match=r"clip/model.safetensors: .*damaged or incomplete"):
        ClipEncoder.load(f"clip:{copy}")
    (tmp_path / "videos").mkdir()
    args = ["features", "extract", "--videos", str(tmp_path / "videos"), "--out", str(tmp_path / "f"),
            "--encoder", f"clip:{copy}", "--no-progress"]
    (tmp_path / "videos" / "a.mp4").write_bytes(b"")
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "damaged or incomplete" in err
