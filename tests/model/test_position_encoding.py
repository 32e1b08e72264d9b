import math

import torch

from masra.model.position_encoding import anchor_sine_embedding, video_position_encoding


def test_video_encoding_first_channels_are_sin_cos_of_normalised_position():
    mask = torch.ones(1, 4)
    pos = video_position_encoding(mask, 8)
    assert pos.shape == (1, 4, 8)
    expected = torch.tensor([(i + 1) / (4 + 1e-6) * 2 * math.pi for i in range(4)])
    assert torch.allclose(pos[0, :, 0], expected.sin(), atol=1e-6)
    assert torch.allclose(pos[0, :, 1], expected.cos(), atol=1e-6)
    # Channels 2/3 share the next frequency 10000^(2/8).
    assert torch.allclose(pos[0, :, 2], (expected / 10000 ** (2 / 8)).sin(), atol=1e-6)


def test_video_encoding_ignores_trailing_padding():
    alone = video_position_encoding(torch.ones(1, 5), 16)
    padded_mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0, 0.0]])
    padded = video_position_encoding(padded_mask, 16)
    assert torch.allclose(alone[0], padded[0, :5], atol=1e-6)


def test_anchor_embedding_splits_center_and_width():
    anchors = torch.tensor([[[0.25, 0.5]]])
    emb = anchor_sine_embedding(anchors, 8)
    assert emb.shape == (1, 1, 8)
    assert math.isclose(emb[0, 0, 0].item(), math.sin(0.25 * 2 * math.pi), abs_tol=1e-6)
    assert math.isclose(emb[0, 0, 4].item(), math.sin(0.5 * 2 * math.pi), abs_tol=1e-6)
    assert math.isclose(emb[0, 0, 5].item(), math.cos(0.5 * 2 * math.pi), abs_tol=1e-6)
