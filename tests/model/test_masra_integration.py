"""MASRA parts inside the grounding model and the criterion: switches, priors present / partial / absent."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from masra.config import MASRA_PARTS, set_masra_parts, validate_config
from masra.errors import MasraError
from masra.model import build_model
from masra.model.parts import PARTS, lrca

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
    cfg.loss.lrca_band = 2
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
    # Used by their losses only: no gradient without priors (DDP: find_unused_parameters). With SORA on, LRCA's
    # projection P also builds SORA's relation features, so it is trained through SORA then.
    aligners = ("esta.", "lrca.log_video_temperature") if "sora" in names else ("esta.", "lrca.")
    for name, param in model.named_parameters():
        if priors == "none" and name.startswith(aligners):
            assert param.grad is None, name
        elif name.startswith(tuple(names)) or name.startswith("dai_"):
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


def assert_padding_leaves_valid_outputs(model, random_batch) -> None:
    """A padded batch's last sample gives the outputs (heads, saliency, DAI relevance) it gives alone."""
    model.eval()
    pair = random_batch([9, 5], [5, 2], seed=2)
    alone = last_sample_alone(pair, clips=5, tokens=2)
    with torch.no_grad():
        padded_out, alone_out = model(pair), model(alone)
    for key in ("pred_spans", "pred_logits"):
        torch.testing.assert_close(padded_out[key][1], alone_out[key][0], atol=1e-5, rtol=1e-4)
    for key in ("saliency_scores", "dai_relevance"):
        torch.testing.assert_close(padded_out[key][1, :5], alone_out[key][0], atol=1e-5, rtol=1e-4)


def test_padding_never_changes_valid_outputs_with_all_parts(small_config, random_batch):
    assert_padding_leaves_valid_outputs(build(small_config, "all")[0], random_batch)


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
    with pytest.raises(MasraError, match="data.prior_dir"):
        build(small_config, parts, semantic_dim=None)
    model, _ = build(small_config, "dai,sora,lrca", semantic_dim=None)  # these need no prior dimension
    assert [part.name for part in model.parts] == ["dai", "sora", "lrca"]
    assert not hasattr(model, "sge") and not hasattr(model, "esta")


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


@pytest.mark.parametrize("backbone", ["qd_detr", "moment_detr", "cg_detr"])
def test_scores_that_rank_keep_float32_precision_under_bf16_autocast(small_config, random_batch, backbone):
    """Saliency scores (with DAI's relevance log-odds), class logits and spans come out of bf16 autocast in
    float32: rounded to bf16, close clips' scores would tie and the highlight ranking would change."""
    own = {"moment_detr": {"use_negative_pairs": False}}.get(backbone, {})
    cfg = small_config(backbone=backbone, **own)
    set_masra_parts(cfg, "all")
    cfg.model.sora.band = 2
    cfg.model.dai.codebook_size = 4
    torch.manual_seed(0)
    model, _ = build_model(cfg, V_DIM, T_DIM, DS)
    batch = random_batch([40, 30], [3, 2])
    with torch.inference_mode():
        exact = model.eval()(batch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = model(batch)
    for key in ("saliency_scores", "pred_logits", "pred_spans"):
        assert autocast[key].dtype == torch.float32, key
        # Finer than bf16's grid: rounding to bf16 moves them.
        assert (autocast[key].bfloat16().float() != autocast[key]).any(), key
        # Only the layers before the heads ran in bf16.
        torch.testing.assert_close(autocast[key], exact[key], atol=0.1, rtol=0.05)
    valid = batch.video_mask.bool()
    for scores in (autocast["saliency_scores"][valid], exact["saliency_scores"][valid]):
        assert scores.unique().numel() == scores.numel()  # no ties among the 70 valid clips


def long_padded_batch(random_batch, band: int):
    """Two videos long enough for SORA's banded path (more than 3·(2w+1) clips), the second one padded."""
    long = 3 * (2 * band + 1) + 9
    return random_batch([long, long - 6], [4, 3], seed=3)


def sora_calls(model):
    """Record every call of the SORA layer: (args, output)."""
    calls = []
    model.sora.register_forward_hook(lambda module, args, output: calls.append((args, output)))
    return calls


def test_full_model_banded_sora_equals_dense_under_bf16_with_padding(small_config, random_batch, monkeypatch):
    import masra.model.parts.sora as sora_module

    model, _ = build(small_config, "sora")
    model.eval()
    batch = long_padded_batch(random_batch, model.sora.band)
    calls = sora_calls(model)
    outputs = {}
    for name, multiple in (("banded", 0), ("dense", 10**6)):
        monkeypatch.setattr(sora_module, "DENSE_MAX_BAND_MULTIPLE", multiple)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            outputs[name] = model(batch)
    (_, banded), (_, dense) = calls
    valid = torch.cat([torch.ones(2, 1), batch.video_mask], dim=1).bool()
    assert banded.dtype == torch.bfloat16
    torch.testing.assert_close(banded[valid].float(), dense[valid].float(), atol=0.1, rtol=0.05)
    mask = batch.video_mask.bool()
    torch.testing.assert_close(
        outputs["banded"]["saliency_scores"][mask], outputs["dense"]["saliency_scores"][mask], atol=0.1, rtol=0.05
    )


def test_full_model_banded_sora_without_global_token_ignores_clips_beyond_twice_the_band(small_config, random_batch):
    model, _ = build(small_config, "sora")
    model.eval()
    batch = long_padded_batch(random_batch, model.sora.band)
    calls = sora_calls(model)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(batch)
    (src, mask, pos, *_), _ = calls[0]
    layer, w = model.sora, model.sora.band
    # The model's SORA layer on the model's own clip memory, without the global token: masked out, no clip
    # attends to it. Contiguous copies: the changed input below is contiguous too, so both runs take the
    # same kernels.
    src, pos = src.contiguous(), pos.contiguous()
    mask = mask.clone()
    mask[:, 0] = 0
    clip_mask = mask[:, 1:]
    length = int(clip_mask[1].sum())  # the padded video
    assert clip_mask.shape[1] > 3 * (2 * w + 1)  # the banded path
    far = 1 + length - 1  # its last valid clip, as a token index
    changed = src.clone()
    changed[1, far] += 5.0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(src, mask, pos)
        out_changed = layer(changed, mask, pos)
        dense = layer.dense_attention(src, mask, pos)
        banded = layer.banded_attention(src, mask, pos)
    near = far - 2 * w  # tokens up to 2w before the change may see it
    torch.testing.assert_close(out_changed[1, 1:near], out[1, 1:near], atol=0, rtol=0)
    assert not torch.equal(out_changed[1, near:far], out[1, near:far])
    torch.testing.assert_close(out_changed[0, 1:], out[0, 1:], atol=0, rtol=0)  # the other video
    valid = clip_mask.bool()
    torch.testing.assert_close(banded[:, 1:][valid].float(), dense[:, 1:][valid].float(), atol=0.1, rtol=0.05)


def test_sora_relates_the_features_lrca_aligns_and_an_lrca_step_changes_r2(small_config, random_batch):
    from masra.model.parts.sora import second_order_relation

    model, criterion = build(small_config, "sora,lrca")
    batch = with_priors(random_batch([9, 7], [4, 3]), [1.0, 1.0])
    calls = sora_calls(model)

    def relation():
        model.eval()
        calls.clear()
        with torch.no_grad():
            out = model(batch)
        (src, mask, _, feats, *_), _ = calls[0]
        torch.testing.assert_close(feats, out["lrca_video_proj"])  # the same P·h that LRCA aligns
        return second_order_relation(feats, mask[:, 1:], model.sora.band)

    before = relation()
    model.train()
    optimizer = torch.optim.SGD(model.lrca.parameters(), lr=0.5)  # only P moves: h stays what it was
    lrca.loss(model(batch), batch, criterion.loss_cfg)["loss_lrca"].backward()
    optimizer.step()
    assert (relation() - before).abs().max() > 1e-3


def test_diagnostics_and_chance_levels_are_reported_in_training(small_config, random_batch):
    model, criterion = build(small_config, "all")
    model.sora.beta.data = torch.tensor([0.5, 1.0, 1.5, 2.0])
    batch = with_priors(random_batch([7, 5], [4, 2]), [1.0, 1.0])
    terms = criterion(model.train()(batch), batch)
    assert [terms[f"diag_sora_beta_h{h}"].item() for h in range(4)] == [0.5, 1.0, 1.5, 2.0]
    assert terms["diag_sge_gate"].item() == pytest.approx(torch.sigmoid(torch.tensor(-2.0)).item(), abs=1e-6)
    assert terms["diag_esta_temperature"].item() == pytest.approx(0.07)
    assert terms["diag_lrca_temperature"].item() == pytest.approx(0.1)
    assert 0 < terms["diag_sora_attention_moved"].item() < 1
    layers = [terms[f"diag_dai_codebook_mass_l{i}"].item() for i in range(len(model.t2v_encoder.layers))]
    assert all(0 < mass < 0.5 for mass in layers)  # starts near 1/(N+1)
    assert 0 <= terms["diag_dai_context_codebook_cos"].item() <= 1
    for loss in ("loss_dai_relevance", "esta_nce", "esta_clip_event", "loss_lrca", "loss_sge_caption"):
        assert terms[f"{loss}_chance"].item() > 0, loss
    assert "loss" in terms and not any(k.startswith(("diag_", "loss_lrca_chance")) for k in criterion.weight_dict)
    with torch.no_grad():
        assert "diagnostics" not in model.eval()(batch)


def test_dai_diversity_is_computed_on_the_codebook_not_on_its_context_shift(small_config, random_batch):
    from masra.model.parts.dai import codebook_diversity_loss

    model, criterion = build(small_config, "dai", dai_diversity=1.0)
    book = model.dai_codebook
    torch.nn.init.normal_(book.slot_out.weight, std=5.0)  # a large context shift
    batch = random_batch([7, 5], [4, 2])
    terms = criterion(model.train()(batch), batch)
    torch.testing.assert_close(terms["loss_dai_diversity"], codebook_diversity_loss(book.codebook))
    model.zero_grad()
    terms["loss_dai_diversity"].backward()
    assert book.codebook.grad.abs().sum() > 0
    context = [p for name, p in book.named_parameters() if name.startswith("slot_")]
    assert context and all(p.grad is None or p.grad.abs().sum() == 0 for p in context)


def test_the_relevance_loss_alone_trains_the_decoupled_attention_and_the_codebook(small_config, random_batch):
    """A detached relevance (the BCE then trains nothing) fails here."""
    model, criterion = build(small_config, "dai")
    batch = random_batch([7, 5], [4, 2])
    terms = criterion(model.train()(batch), batch)
    model.zero_grad()
    terms["loss_dai_relevance"].backward()
    for layer in model.t2v_encoder.layers:
        for name in ("q_proj", "k_proj"):
            grad = getattr(layer.cross_attn, name).weight.grad
            assert grad is not None and grad.abs().sum() > 0, name
        assert layer.cross_attn.codebook_bias.grad.abs().sum() > 0
    assert model.dai_codebook.codebook.grad.abs().sum() > 0


def test_dai_relevance_log_odds_join_the_saliency_of_both_passes(small_config, random_batch):
    """Each clip's saliency is the backbone's score plus w · logit(a) of the last T2V layer, on the positive and on
    the negative pairs, and the saliency loss trains w. A model without DAI's ``rescore`` hook fails here."""
    batch = random_batch([7, 5], [4, 2])
    model, criterion = build(lambda: small_config(dropout=0.0, input_dropout=0.0), "dai")  # deterministic
    weight = model.dai_codebook.relevance_weight
    outputs = model.train()(batch)
    model.zero_grad()
    criterion(outputs, batch)["loss_saliency"].backward()
    assert weight.grad is not None and weight.grad.abs() > 0
    with torch.no_grad():
        weight.fill_(0.0)
        backbone_only = model(batch)
    valid = batch.video_mask.bool()
    for scores, relevance in (("saliency_scores", "dai_relevance_layers"), ("saliency_scores_neg", "dai_relevance_layers_neg")):
        log_odds = torch.logit(outputs[relevance][:, -1].detach(), eps=1e-6)
        assert log_odds[valid].std() > 0, "the relevance differs between clips"
        torch.testing.assert_close(outputs[scores].detach()[valid], (backbone_only[scores] + log_odds)[valid])


def test_dai_without_relevance_to_saliency_leaves_the_saliency_to_the_backbone(small_config, random_batch):
    """``model.dai.relevance_to_saliency: false`` builds no weight and scores as the fused model with w = 0."""

    def config(fused: bool):
        cfg = small_config(dropout=0.0, input_dropout=0.0)
        cfg.model.dai.relevance_to_saliency = fused
        return cfg

    batch = random_batch([7, 5], [4, 2])
    plain, _ = build(lambda: config(False), "dai")
    fused, _ = build(lambda: config(True), "dai")
    assert plain.dai_codebook.relevance_weight is None and "dai_relevance_weight" not in plain.dai_codebook.diagnostics()
    with torch.no_grad():
        fused.dai_codebook.relevance_weight.fill_(0.0)
        torch.testing.assert_close(plain.eval()(batch)["saliency_scores"], fused.eval()(batch)["saliency_scores"])


def test_part_outputs_and_auxiliary_losses_see_exactly_the_positive_pass(small_config, random_batch):
    """With negative pairs the model encodes [positives; negatives] in one call; every part output (and so
    every auxiliary loss) must be the positive half. Reading the negative half instead fails here."""
    batch = with_priors(random_batch([7, 5, 6], [4, 2, 3]), [1.0, 1.0, 1.0])
    outputs, terms = {}, {}
    for negatives in (True, False):
        model, criterion = build(lambda: small_config(dropout=0.0, input_dropout=0.0), "all")  # deterministic
        model.use_negative_pairs = negatives
        outputs[negatives] = model.train()(batch)
        terms[negatives] = criterion(outputs[negatives], batch)
    for key in ("dai_relevance", "dai_relevance_layers", "sge_semantics", "lrca_video_proj", "memory"):
        torch.testing.assert_close(outputs[True][key], outputs[False][key], msg=key)
    assert outputs[True]["dai_relevance_layers_neg"].shape == outputs[True]["dai_relevance_layers"].shape
    for key in ("loss_sge_caption", "loss_esta", "loss_lrca"):
        torch.testing.assert_close(terms[True][key], terms[False][key], msg=key)


def test_switching_parts_on_leaves_every_baseline_weight_at_its_initial_value(small_config):
    """The ablation pairs each variant with the baseline of the same seed: every baseline parameter starts
    equal, DAI's (whose attention replaces the baseline's) included."""
    def initial(parts):
        model, _ = build(small_config, parts)
        return dict(model.named_parameters())

    baseline = initial("none")
    for parts in ("dai", "all"):
        weights = initial(parts)
        shared = [name for name in baseline if name in weights]
        assert len(shared) >= len(baseline) - 4 * small_config().model.t2v_layers  # only the replaced attention
        for name in shared:
            assert torch.equal(baseline[name], weights[name]), (parts, name)


def test_each_part_starts_from_the_same_weights_whatever_other_parts_are_on(small_config):
    """Each part draws its initial weights from a stream of its own (per run seed and part): alone, with every
    part on and with every part but another one, its weights (DAI's T2V attention included) are the same, so
    all parts and all-but-one differ only by the part left out. Another seed gives other weights."""
    attributes = {part.name: part.attribute for part in PARTS}

    def part_weights(model, part):
        return {k: v for k, v in model.state_dict().items()
                if k.startswith(attributes[part] + ".") or (part == "dai" and ".cross_attn." in k)}

    every_part, _ = build(small_config, "all", seed=5)
    for part in MASRA_PARTS:
        reference = part_weights(every_part, part)
        assert reference, part
        others = [p for p in MASRA_PARTS if p != part]
        for parts in (part, ",".join(others[1:] + [part]), ",".join(others[:-1] + [part])):
            weights = part_weights(build(small_config, parts, seed=5)[0], part)
            assert weights.keys() == reference.keys(), (part, parts)
            for key, value in weights.items():
                assert torch.equal(value, reference[key]), (part, parts, key)
    reseeded = part_weights(build(small_config, "all", seed=6)[0], "lrca")
    assert any(not torch.equal(v, part_weights(every_part, "lrca")[k]) for k, v in reseeded.items())


@pytest.mark.parametrize("backbone", ["qd_detr", "moment_detr", "cg_detr"])
def test_esta_aligns_the_projected_clips_by_default_and_the_memory_on_request(small_config, random_batch, backbone):
    """ESTA's default source is the projected clips before any interaction with the query: its loss trains the
    input projection and none of the layers after it, and its outputs are ESTA applied to those clips. With
    ``source: memory`` the loss also trains the encoder. An ESTA that reads the memory by default fails here."""
    batch = with_priors(random_batch([7, 5], [4, 2]), [1.0, 1.0])
    for source in ("input", "memory"):
        cfg = small_config()
        cfg.model.backbone = backbone
        cfg.model.use_negative_pairs = backbone != "moment_detr"
        set_masra_parts(cfg, "esta")
        cfg.model.esta.source = source
        torch.manual_seed(0)
        model, criterion = build_model(cfg, V_DIM, T_DIM, DS)
        model.train()
        outputs = model(batch)
        model.zero_grad()
        criterion(outputs, batch)["loss_esta"].backward()
        trained = {name.split(".")[0] for name, p in model.named_parameters()
                   if p.grad is not None and p.grad.abs().sum() > 0}
        assert "video_proj" in trained and "esta" in trained
        assert ("encoder" in trained or "t2v_encoder" in trained) == (source == "memory"), (source, sorted(trained))
        if source == "input":
            torch.manual_seed(1)  # the input dropout of the forward below draws what the model's draw drew
            model.eval()
            video, _ = model.project_inputs(batch.video_feats, batch.query_feats)
            expected = model.esta(video, batch.video_mask, batch.event_spans)
            assert torch.allclose(model(batch)["esta_clip_proj"], expected["esta_clip_proj"], atol=1e-6)


@pytest.mark.parametrize(("part", "key"), [("esta", "source"), ("sge", "back_norm"), ("dai", "context")])
def test_an_unknown_choice_of_a_part_setting_is_refused(small_config, part, key):
    cfg = small_config()
    set_masra_parts(cfg, part)
    setattr(getattr(cfg.model, part), key, "decoder")
    with pytest.raises(MasraError, match=rf"model\.{part}\.{key}.*must be one of .*got 'decoder'"):
        validate_config(cfg)
