"""MASRA parts inside the grounding model and the criterion: switches, priors present / partial / absent."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from masra.config import MASRA_PARTS, set_masra_parts
from masra.errors import MasraError
from masra.model import build_model

from conftest import last_sample_alone, T_DIM, V_DIM

DS = 12
BASELINE_CHILDREN = {
    "video_proj", "text_proj", "t2v_encoder", "encoder", "decoder", "anchors", "class_head", "span_head",
    "saliency_proj1", "saliency_proj2",
}  # fmt: skip
PART_OUTPUT = {
    "dai": "dai_relevance",
    "sge": "sge_semantics",
    "esta": "esta_clip_proj",
    "lrca": "lrca_video_proj",
}
PART_LOSSES = {
    "dai": ("loss_dai_relevance", "loss_dai_diversity"),
    "sge": ("loss_sge_caption",),
    "esta": ("loss_esta",),
    "lrca": ("loss_lrca",),
    "sora": (),
}


def with_priors(batch, has_priors: list[float], seed: int = 0):
    """Random priors: captions on most clips, 1-3 (overlapping) events per sample; rows without priors zeroed."""
    gen = torch.Generator().manual_seed(seed)
    size, length = batch.video_mask.shape
    caption_mask = batch.video_mask * (torch.rand(size, length, generator=gen) > 0.2).float()
    spans = torch.zeros(size, 3, 2, dtype=torch.long)
    event_mask = torch.zeros(size, 3)
    for b in range(size):
        n = int(batch.video_mask[b].sum())
        for k in range(1 + b % 3):
            start = int(torch.randint(0, n, (1,), generator=gen))
            spans[b, k] = torch.tensor([start, min(n - 1, start + 2)])
            event_mask[b, k] = 1
    prior = torch.tensor(has_priors)
    return dataclasses.replace(
        batch,
        has_priors=prior,
        caption_emb=F.normalize(torch.randn(size, length, DS, generator=gen), dim=-1) * prior[:, None, None],
        caption_mask=caption_mask * prior[:, None],
        event_emb=F.normalize(torch.randn(size, 3, DS, generator=gen), dim=-1),
        event_spans=spans,
        event_mask=event_mask * prior[:, None],
    )


def build(small_config, parts, seed: int = 0, semantic_dim: int | None = DS, **loss_weights):
    cfg = small_config()
    set_masra_parts(cfg, parts)
    cfg.model.sora.band = 2
    cfg.model.lrca.band = 2
    cfg.model.dai.codebook_size = 4
    for key, value in loss_weights.items():
        setattr(cfg.loss, key, value)
    torch.manual_seed(seed)
    return build_model(cfg, V_DIM, T_DIM, semantic_dim)


def test_all_parts_off_is_the_baseline(small_config, random_batch):
    model, criterion = build(small_config, "none")
    assert {name for name, _ in model.named_children()} == BASELINE_CHILDREN
    assert not any(part in name for name, _ in model.named_parameters() for part in MASRA_PARTS)
    assert criterion.losses == ["spans", "labels", "saliency"]
    batch = with_priors(random_batch([7, 5], [4, 2]), [1.0, 1.0])
    out = model.train()(batch)
    assert not any(key.startswith(tuple(MASRA_PARTS)) for key in out)
    assert not any(key.startswith(("loss_dai", "loss_sge", "loss_esta", "loss_lrca")) for key in criterion(out, batch))


def test_training_only_parts_leave_the_baseline_init_and_inference_bit_identical(small_config, random_batch):
    baseline, _ = build(small_config, "none", seed=3)
    aligned, _ = build(small_config, "esta,lrca", seed=3)
    later_parts, _ = build(small_config, "sora,sge,esta,lrca", seed=3)  # DAI replaces baseline modules
    base_state = baseline.state_dict()
    for name, value in aligned.state_dict().items():
        if not name.startswith(("esta.", "lrca.")):
            assert torch.equal(value, base_state[name]), name
    # Parts created after the baseline modules never shift the baseline's random init.
    for name, value in later_parts.state_dict().items():
        if not name.startswith(("sora.", "sge.", "esta.", "lrca.")):
            assert torch.equal(value, base_state[name]), name
    batch = random_batch([7, 5], [4, 2])
    with torch.no_grad():
        base_out, aligned_out = baseline.eval()(batch), aligned.eval()(batch)
    assert torch.equal(base_out["pred_spans"], aligned_out["pred_spans"])
    assert torch.equal(base_out["saliency_scores"], aligned_out["saliency_scores"])
    assert "esta_clip_proj" not in aligned_out  # no priors at inference: the alignments do not run


@pytest.mark.parametrize("parts", ["dai", "sge", "sora", "esta", "lrca", "all"])
@pytest.mark.parametrize("priors", ["all", "partial", "none"])
def test_each_part_trains_with_full_partial_and_no_priors(small_config, random_batch, parts, priors):
    model, criterion = build(small_config, parts)
    batch = random_batch([7, 5, 4], [4, 2, 3], seed=1)
    if priors != "none":
        batch = with_priors(batch, [1.0, 1.0, 1.0] if priors == "all" else [1.0, 0.0, 1.0])
    out = model.train()(batch)
    terms = criterion(out, batch)
    names = [p for p in MASRA_PARTS if p in parts or parts == "all"]
    for part in names:
        if part in PART_OUTPUT:
            assert PART_OUTPUT[part] in out
        for term in PART_LOSSES[part]:
            assert term in terms and torch.isfinite(terms[term]), term
            if priors == "none" and part in ("sge", "esta", "lrca"):
                assert terms[term].item() == 0.0, term
            elif priors != "none" or part == "dai":
                assert terms[term].item() > 0.0, term
    assert torch.isfinite(terms["loss"])
    terms["loss"].backward()
    for name, param in model.named_parameters():
        if name.startswith(tuple(names)) or name.startswith("dai_"):
            assert param.grad is not None and torch.isfinite(param.grad).all(), name


@pytest.mark.parametrize("parts", ["dai", "sge", "sora", "all"])
def test_inference_needs_no_priors(small_config, random_batch, parts):
    model, _ = build(small_config, parts)
    batch = random_batch([6, 3], [3, 2])
    batch = dataclasses.replace(batch, span_targets=None, saliency_pos_idx=None, saliency_neg_idx=None,
                                saliency_all_labels=None, relevant_mask=None)  # fmt: skip
    with torch.no_grad():
        out = model.eval()(batch)
    assert out["pred_spans"].shape == (2, 10, 2) and torch.isfinite(out["saliency_scores"]).all()
    assert not any(key.startswith("esta_") for key in out) and "diagnostics" not in out


def test_padding_never_changes_valid_outputs_with_all_parts(small_config, random_batch):
    model, _ = build(small_config, "all")
    model.eval()
    pair = random_batch([9, 5], [5, 2], seed=2)
    alone = last_sample_alone(pair, clips=5, tokens=2)
    with torch.no_grad():
        padded_out, alone_out = model(pair), model(alone)
    for key in ("pred_spans", "pred_logits"):
        torch.testing.assert_close(padded_out[key][1], alone_out[key][0], atol=1e-5, rtol=1e-4)
    for key in ("saliency_scores", "dai_relevance"):
        torch.testing.assert_close(padded_out[key][1, :5], alone_out[key][0], atol=1e-5, rtol=1e-4)


def test_loss_weights_are_applied_once(small_config, random_batch):
    batch = with_priors(random_batch([6, 4], [3, 2]), [1.0, 1.0])
    totals, terms = [], None
    for scale in (1.0, 3.0):
        model, criterion = build(small_config, "all", esta=scale, lrca=scale, sge_caption=scale, dai_relevance=scale)
        torch.manual_seed(0)  # same dropout masks
        terms = criterion(model.train()(batch), batch)
        totals.append(terms["loss"].item())
    extra = 2.0 * sum(terms[k].item() for k in ("loss_esta", "loss_lrca", "loss_sge_caption", "loss_dai_relevance"))
    assert totals[1] - totals[0] == pytest.approx(extra, rel=1e-4)


@pytest.mark.parametrize("parts", ["sge", "esta"])
def test_semantic_parts_without_a_prior_dimension_are_a_clear_error(small_config, parts):
    with pytest.raises(MasraError, match="model.sge.semantic_dim"):
        build(small_config, parts, semantic_dim=None)
    model, _ = build(small_config, "dai,sora,lrca", semantic_dim=None)  # these need no prior dimension
    assert model.sge is None and model.esta is None


def test_all_parts_under_bf16_autocast(small_config, random_batch):
    model, criterion = build(small_config, "all")
    batch = with_priors(random_batch([6, 4], [3, 2]), [1.0, 0.0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.train()(batch)
        terms = criterion(out, batch)
    assert all(torch.isfinite(v) for v in terms.values())
    terms["loss"].backward()
    assert model.sora.beta.grad is not None and torch.isfinite(model.sora.beta.grad).all()
    assert model.dai_codebook.codebook.grad is not None
