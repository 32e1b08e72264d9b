"""A small CLIP with random weights, saved with ``save_pretrained`` so it loads through the same
``from_pretrained`` path as a user's real weights (no CLIP weights exist offline).

Its tokenizer is a real ``CLIPTokenizer`` with a byte-level vocabulary and no merges (every character is a
token, the last one of a word with ``</w>``); the start/end tokens have the highest ids, as in OpenAI's.
"""

from __future__ import annotations

from pathlib import Path

import torch

PROJECTION_DIM = 16
TEXT_WIDTH = 24


def _byte_vocab() -> dict[str, int]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(tokens)}


def make_tiny_clip(
    folder: Path, seed: int = 0, *, projection_dim: int = PROJECTION_DIM, text_width: int = TEXT_WIDTH
) -> Path:
    """Write a random CLIP (vision: 2 layers, width 32, patch 32; text: 2 layers) + tokenizer."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    vocab = _byte_vocab()
    bos, eos = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=text_width, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=bos, eos_token_id=eos,
                         pad_token_id=eos),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=224, patch_size=32),
        projection_dim=projection_dim,
    )
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(folder)
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(folder)
    return folder
