import torch

from masra.model.span_ops import (
    generalized_temporal_iou,
    inverse_sigmoid,
    span_cxw_to_xx,
    span_xx_to_cxw,
    temporal_iou,
)


def test_format_round_trip():
    xx = torch.tensor([[0.0, 1.0], [0.2, 0.4], [0.5, 0.5]])
    cxw = span_xx_to_cxw(xx)
    assert torch.allclose(cxw, torch.tensor([[0.5, 1.0], [0.3, 0.2], [0.5, 0.0]]))
    assert torch.allclose(span_cxw_to_xx(cxw), xx)


def test_iou_and_giou_by_hand():
    a = torch.tensor([[0.0, 0.2], [0.5, 1.0]])
    b = torch.tensor([[0.0, 0.3], [0.0, 1.0]])
    iou, union = temporal_iou(a, b)
    # [0,.2] vs [0,.3]: inter .2 / union .3; [0,.2] vs [0,1]: .2/1; [.5,1] vs [0,.3]: disjoint; [.5,1] vs [0,1]: .5/1
    assert torch.allclose(iou, torch.tensor([[2 / 3, 0.2], [0.0, 0.5]]))
    assert torch.allclose(union, torch.tensor([[0.3, 1.0], [0.8, 1.0]]))
    giou = generalized_temporal_iou(a, b)
    # Only the disjoint pair has hull > union: hull [0, 1] = 1, union .8 -> 0 - .2 / 1.
    assert torch.allclose(giou, torch.tensor([[2 / 3, 0.2], [-0.2, 0.5]]))


def test_giou_of_identical_spans_is_one_and_far_spans_approach_minus_one():
    a = torch.tensor([[0.1, 0.3]])
    assert torch.allclose(generalized_temporal_iou(a, a), torch.ones(1, 1))
    far = generalized_temporal_iou(torch.tensor([[0.0, 0.01]]), torch.tensor([[0.99, 1.0]]))
    assert -1.0 < far.item() < -0.97


def test_inverse_sigmoid_inverts_and_clamps():
    x = torch.tensor([-3.0, 0.0, 2.5])
    assert torch.allclose(inverse_sigmoid(x.sigmoid()), x, atol=1e-5)
    edge = inverse_sigmoid(torch.tensor([0.0, 1.0]))
    assert torch.allclose(edge, torch.tensor([-1.0, 1.0]) * torch.log(torch.tensor(0.999 / 0.001)))
