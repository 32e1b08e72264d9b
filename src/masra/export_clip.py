"""The CLIP encoder of a checkpoint's features as ONNX (``masra export --encoder``): the image tower
(pixel values -> image embeddings, what ``ClipEncoder.encode_frames`` computes after its NumPy normalisation),
the text tower (token ids -> token states and pooled embedding, ``ClipEncoder.encode_queries``'s forward) and
the tokenizer as ``tokenizer.json``. The folder format: :mod:`masra.runtime.bundle`; the runtime side:
:mod:`masra.runtime.clip`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from masra.errors import MasraError
from masra.export import check_graph, write_graph
from masra.features.clip_inputs import pixel_values, token_ids
from masra.features.encoder import ClipEncoder
from masra.runtime.bundle import (
    IMAGE_INPUT_NAMES,
    IMAGE_MODEL_FILE,
    IMAGE_OUTPUT_NAMES,
    TEXT_INPUT_NAMES,
    TEXT_MODEL_FILE,
    TEXT_OUTPUT_NAMES,
    TOKENIZER_FILE,
    ClipInfo,
)

# Texts the graphs are traced and checked with: lengths differ, so a batch is padded; one is cut at 77 tokens.
EXAMPLE_TEXTS = ("a person walks past the camera", "dog", "a very long query " * 10)


class ImageTower(nn.Module):
    """pixel_values [n, 3, S, S] -> image_embeds [n, video_dim] (visual projection of the pooled state)."""

    def __init__(self, encoder: ClipEncoder) -> None:
        super().__init__()
        self.vision, self.projection = encoder.model.vision_model, encoder.model.visual_projection

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.projection(self.vision(pixel_values=pixels).pooler_output)


class TextTower(nn.Module):
    """(input_ids, attention_mask) [n, T] -> (last_hidden_state [n, T, width], text_embeds [n, projection_dim])."""

    def __init__(self, encoder: ClipEncoder) -> None:
        super().__init__()
        self.text, self.projection = encoder.model.text_model, encoder.model.text_projection

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.text(input_ids=input_ids, attention_mask=attention_mask)
        return out.last_hidden_state, self.projection(out.pooler_output)


def export_clip(encoder: ClipEncoder, folder: Path) -> ClipInfo:
    """Write the two towers and the tokenizer into ``folder``, each tower checked on onnxruntime against torch."""
    from torch.export import Dim

    if encoder.device.type != "cpu" or encoder.tokenizer is None:
        raise MasraError("the encoder to export must be loaded on the CPU with its tokenizer", field="encoder")
    size = encoder.image_size
    frames = np.random.default_rng(0).integers(0, 256, (5, size, size, 3), np.uint8)
    image, text = ImageTower(encoder), TextTower(encoder)
    write_graph(image, (torch.from_numpy(pixel_values(frames[:2])),), {"pixels": {0: Dim("images", min=1)}},
                IMAGE_INPUT_NAMES, IMAGE_OUTPUT_NAMES, folder / IMAGE_MODEL_FILE)
    ids, mask = token_ids(encoder.tokenizer, EXAMPLE_TEXTS[:2])
    longest = encoder.model.config.text_config.max_position_embeddings
    texts, tokens = Dim("texts", min=1), Dim("text_tokens", min=1, max=longest)
    write_graph(text, (torch.from_numpy(ids), torch.from_numpy(mask)),
                {"input_ids": {0: texts, 1: tokens}, "attention_mask": {0: texts, 1: tokens}}, TEXT_INPUT_NAMES,
                TEXT_OUTPUT_NAMES, folder / TEXT_MODEL_FILE)
    check_graph(image, folder / IMAGE_MODEL_FILE, (pixel_values(frames[2:]),), IMAGE_INPUT_NAMES, IMAGE_OUTPUT_NAMES)
    check_graph(text, folder / TEXT_MODEL_FILE, token_ids(encoder.tokenizer, EXAMPLE_TEXTS), TEXT_INPUT_NAMES,
                TEXT_OUTPUT_NAMES)
    encoder.tokenizer.save(str(folder / TOKENIZER_FILE))
    return ClipInfo(spec=str(encoder.spec), fingerprint=encoder.fingerprint, image_size=encoder.image_size,
                    video_dim=encoder.video_dim, text_dim=encoder.text_dim)
