"""Auxiliary losses that never slow the start: the ramp of their weights and the chance-level normalisation."""

from __future__ import annotations

import math

import pytest
import torch

from masra.config import LossConfig
from masra.model.criterion import AuxRamp, SetCriterion, relative_to_chance
from masra.model.matcher import HungarianMatcher
from masra.model.parts import esta, lrca
from masra.train.engine import train_one_epoch
from test_masra_integration import build, with_priors


def test_ramp_weight_schedule():
    ramp = AuxRamp(start=1.0, epochs=2.0)
    assert [ramp(p) for p in (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 7.0)] == [0.0, 0.0, 0.0, 0.25, 0.5, 1.0, 1.0]
    assert ramp(None) == 1.0  # outside training (no position known): full weight
    assert AuxRamp()(0.0) == 1.0  # the default: no ramp
    step = AuxRamp(start=2.0, epochs=0.0)
    assert (step(1.99), step(2.0)) == (0.0, 1.0)


def test_auxiliary_terms_are_the_part_losses_only(small_config):
    _, criterion = build(small_config, "all")
    assert criterion.auxiliary_terms == {
        "loss_dai_relevance", "loss_dai_diversity", "loss_sge_caption", "loss_esta", "loss_lrca"
    }
    assert build(small_config, "none")[1].auxiliary_terms == set()


def _criterion(**kwargs) -> SetCriterion:
    weights = {"loss_saliency": 2.0, "loss_esta": 3.0, "loss_lrca": 0.5}
    return SetCriterion(
        HungarianMatcher(), weights, losses=["saliency"], parts=[esta.PART, lrca.PART], loss_cfg=LossConfig(), **kwargs
    )


def test_chance_normalisation_is_excess_over_chance_in_units_of_chance():
    loss = torch.tensor(3.0, requires_grad=True)
    chance = torch.tensor(math.log(80))
    normalised = relative_to_chance(loss, chance)
    assert normalised.item() == pytest.approx((3.0 - math.log(80)) / math.log(80))
    normalised.backward()
    assert loss.grad.item() == pytest.approx(1 / math.log(80))  # the gradient is scaled by 1 / chance
    assert relative_to_chance(torch.tensor(0.0), torch.tensor(0.0)).item() == 0.0  # nothing to score: unchanged
    assert relative_to_chance(torch.tensor(2.0), None).item() == 2.0

    terms = {"loss_saliency": torch.tensor(1.0), "loss_esta": torch.tensor(3.0), "loss_esta_chance": chance,
             "loss_lrca": torch.tensor(0.4)}  # LRCA without a chance level enters as it is
    plain = _criterion().weighted_total(terms).item()
    normed = _criterion(aux_chance_norm=True).weighted_total(terms).item()
    assert plain == pytest.approx(2.0 * 1.0 + 3.0 * 3.0 + 0.5 * 0.4)
    assert normed == pytest.approx(2.0 * 1.0 + 3.0 * (3.0 - math.log(80)) / math.log(80) + 0.5 * 0.4)


def test_ramp_scales_the_auxiliary_weights_and_nothing_else():
    criterion = _criterion(aux_ramp=AuxRamp(start=0.0, epochs=4.0))
    terms = {"loss_saliency": torch.tensor(1.0), "loss_esta": torch.tensor(3.0), "loss_lrca": torch.tensor(0.4)}
    for progress, ramp in ((0.0, 0.0), (1.0, 0.25), (4.0, 1.0), (9.0, 1.0)):
        criterion.set_progress(progress)
        assert criterion.weighted_total(terms).item() == pytest.approx(2.0 + ramp * (9.0 + 0.2))


def test_ramped_out_parts_give_no_gradient_at_the_start(small_config, random_batch):
    """With all parts on, at progress 0 the total is the baseline's terms alone, and the heads that only
    the auxiliary losses train receive no gradient; once ramped in they do."""
    model, criterion = build(small_config, "all", aux_ramp_epochs=2.0)
    batch = with_priors(random_batch([8, 6], [3, 2]), [1.0, 1.0])
    aux_heads = [p for name, p in model.named_parameters() if name.startswith("esta.")]  # trained by its loss only
    assert aux_heads
    for progress, expect_gradient in ((0.0, False), (1.0, True)):
        model.zero_grad(set_to_none=True)
        criterion.set_progress(progress)
        terms = criterion(model(batch), batch)
        aux = criterion.auxiliary_terms
        baseline = sum(w * terms[k] for k, w in criterion.weight_dict.items() if k in terms and k not in aux)
        auxiliary = sum(w * terms[k] for k, w in criterion.weight_dict.items() if k in terms and k in aux)
        ramp = criterion.aux_ramp(progress)
        assert terms["loss"].item() == pytest.approx((baseline + ramp * auxiliary).item(), rel=1e-5)
        assert terms["aux_ramp"].item() == ramp
        terms["loss"].backward()
        grads = [p.grad for p in aux_heads]
        has_gradient = any(g is not None and g.abs().sum() > 0 for g in grads)
        assert has_gradient == expect_gradient


class _Batch:
    def to(self, device, non_blocking=False):
        return self


class _RecordingCriterion(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.seen: list[float] = []

    def set_progress(self, epochs_done: float) -> None:
        self.seen.append(epochs_done)

    def forward(self, outputs, batch):
        return {"loss": outputs["x"] ** 2}


class _Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.ones(()))

    def forward(self, batch):
        return {"x": self.p * 1.0}


def test_the_training_loop_tells_the_criterion_where_training_stands():
    model, criterion = _Model(), _RecordingCriterion()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train_one_epoch(model, criterion, [_Batch()] * 4, optimizer, device=torch.device("cpu"), epoch=2, grad_clip=0,
                    progress=False)
    assert criterion.seen == [2.0, 2.25, 2.5, 2.75]


def test_chance_normalisation_uses_the_chance_levels_the_parts_report(small_config, random_batch):
    """With all parts on, every weighted auxiliary loss that reports a chance level enters the total as
    (L − c) / c, ESTA's with the chance level of its weighted sum of two terms."""
    model, criterion = build(small_config, "all", aux_chance_norm=True)
    batch = with_priors(random_batch([8, 6, 7], [3, 2, 2]), [1.0, 1.0, 1.0])
    terms = criterion(model(batch), batch)
    w = criterion.loss_cfg.esta_clip_event_weight
    assert terms["loss_esta_chance"].item() == pytest.approx(
        (terms["esta_nce_chance"] + w * terms["esta_clip_event_chance"]).item())
    normalised = [k for k in criterion.weight_dict if k in criterion.auxiliary_terms and k + "_chance" in terms]
    assert {"loss_esta", "loss_lrca", "loss_sge_caption", "loss_dai_relevance"} <= set(normalised)
    expected = 0.0
    for key, weight in criterion.weight_dict.items():
        if key not in terms:
            continue
        value = terms[key]
        if key in normalised and terms[key + "_chance"].item() > 0:
            value = (value - terms[key + "_chance"]) / terms[key + "_chance"]
        expected = expected + weight * value
    assert terms["loss"].item() == pytest.approx(float(expected.detach()), rel=1e-5)
    plain = build(small_config, "all")[1](model(batch), batch)["loss"]
    assert plain.item() != pytest.approx(terms["loss"].item())
