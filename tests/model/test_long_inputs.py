"""Which training inputs run their layers under activation checkpointing (``masra.model.layers.run_layer``)."""

from __future__ import annotations

from unittest import mock

import pytest
import torch

import masra.model.layers as layers


def checkpointed(batch: int, clips: int, training: bool = True) -> bool:
    layer = torch.nn.Linear(4, 4)
    x = torch.randn(batch, clips, 4)
    with mock.patch.object(layers, "checkpoint", wraps=layers.checkpoint) as spy, torch.set_grad_enabled(training):
        out = layers.run_layer(layer, x)
    torch.testing.assert_close(out, layer(x))
    return spy.call_count == 1


@pytest.mark.parametrize(
    ("batch", "clips", "expected"),
    [
        (2 * 8, 1 + 2048, True),  # batch 8 with its negative pairs, 2,048 clips + the global token: 32,784 rows
        (2 * 8, 1 + 4000, True),  # just below 2^16 rows, where nothing was checkpointed (10.6 GiB per step)
        (2 * 32, 1 + 75, False),  # QVHighlights: batch 32, 75 clips; no recomputation, full speed
        (8, 75, False),
    ],
)
def test_long_training_inputs_are_checkpointed_and_short_ones_are_not(batch: int, clips: int, expected: bool) -> None:
    assert checkpointed(batch, clips) is expected


def test_inference_is_never_checkpointed() -> None:
    assert not checkpointed(2 * 8, 1 + 4000, training=False)
