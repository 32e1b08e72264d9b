
import dataclasses

import pytest
import torch

from masra.model import build_model
from masra.model.decoder import DecoderLayer

from conftest import last_sample_alone, T_DIM, V_DIM


def _model(cfg, seed=0):
    torch.manual_seed(seed)
    return build_model(cfg, V_DIM, T_DIM)


def test_output_shapes_in_training(small_config, random_batch):
    cfg = small_config()
    model, _ = _model(cfg)
    batch = random_batch([7, 5, 3], [4, 2, 3])
    out = model.train()(batch)
    q, d = cfg.model.num_queries, cfg.model.hidden_dim
    assert out["pred_logits"].shape == (3, q, 2)
    assert out["pred_spans"].shape == (3, q, 2)
    assert ((out["pred_spans"] > 0) & (out["pred_spans"] < 1)).all()
    assert out["saliency_scores"].shape == out["saliency_scores_neg"].shape == (3, 7)
    assert len(out["aux_outputs"]) == cfg.model.dec_layers - 1
    assert out["aux_outputs"][0]["pred_spans"].shape == (3, q, 2)
    assert out["memory"].shape == (3, 7, d)
    assert out["global_token"].shape == (3, d)
    assert torch.equal(out["video_mask"], batch.video_mask)


def test_negative_pairs_only_in_training_and_behind_the_switch(small_config, random_batch):
    batch = random_batch([6, 4], [3, 2])
    model, _ = _model(small_config())
    assert "saliency_scores_neg" not in model.eval()(batch)
    model, _ = _model(small_config(use_negative_pairs=False))
    assert "saliency_scores_neg" not in model.train()(batch)


def test_padding_never_changes_valid_outputs(small_config, random_batch):
    model, _ = _model(small_config())
    model.eval()
    pair = random_batch([9, 5], [5, 2], seed=1)
    alone = last_sample_alone(pair, clips=5, tokens=2)
    with torch.no_grad():
        padded_out, alone_out = model(pair), model(alone)
    assert torch.allclose(padded_out["pred_spans"][1], alone_out["pred_spans"][0], atol=1e-5)
    assert torch.allclose(padded_out["pred_logits"][1], alone_out["pred_logits"][0], atol=1e-5)
    assert torch.allclose(padded_out["saliency_scores"][1, :5], alone_out["saliency_scores"][0], atol=1e-5)
    assert torch.allclose(padded_out["memory"][1, :5], alone_out["memory"][0], atol=1e-5)


def test_a_training_step_sends_gradient_to_every_parameter(small_config, random_batch):
    model, criterion = _model(small_config())
    batch = random_batch([8, 6, 5], [4, 3, 2])
    terms = criterion(model.train()(batch), batch)
    terms["loss"].backward()
    assert [name for name, p in model.named_parameters() if p.grad is None] == []  # DDP needs no unused params
    # The first decoder layer's self-attention content projections act on the all-zero initial target, so
    # their weights (not their biases) get an exactly zero gradient, as in QD-DETR.
    zero_input = {f"decoder.layers.0.{n}.weight" for n in ("sa_qcontent_proj", "sa_kcontent_proj", "sa_v_proj")}
    silent = {name for name, p in model.named_parameters() if not p.grad.abs().sum() > 0}
    assert silent == zero_input


def test_bf16_autocast_forward_and_loss_on_cpu(small_config, random_batch):
    model, criterion = _model(small_config())
    batch = random_batch([6, 4], [3, 2])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.train()(batch)
        terms = criterion(out, batch)
    assert all(torch.isfinite(v) for v in terms.values())
    terms["loss"].backward()
    assert model.anchors.weight.grad is not None


def test_only_the_first_decoder_layer_adds_query_positions_to_content(small_config):
    model, _ = _model(small_config(dec_layers=3))
    layers = model.decoder.layers
    assert isinstance(layers[0], DecoderLayer) and layers[0].ca_qpos_proj is not None
    assert all(layer.ca_qpos_proj is None for layer in layers[1:])
    assert torch.count_nonzero(model.decoder.anchor_refine.layers[-1].bias) == 0


def test_bad_hidden_dim_is_a_clear_error(small_config):
    from masra.errors import MasraError

    with pytest.raises(MasraError, match="hidden_dim"):
        _model(small_config(hidden_dim=30))


def test_batched_negative_pass_equals_a_separate_pass_with_the_rolled_queries(small_config, random_batch):
    # Dropout off, so training mode is deterministic; the negative scores must be those of the rolled queries.
    model, _ = _model(small_config(dropout=0.0, input_dropout=0.0))
    batch = random_batch([7, 5, 6], [4, 2, 3])
    out = model.train()(batch)
    rolled = dataclasses.replace(batch, query_feats=batch.query_feats.roll(-1, 0), query_mask=batch.query_mask.roll(-1, 0))
    alone = model.eval()(batch)
    rolled_alone = model.eval()(rolled)
    assert torch.allclose(out["saliency_scores"], alone["saliency_scores"], atol=1e-5)
    assert torch.allclose(out["saliency_scores_neg"], rolled_alone["saliency_scores"], atol=1e-5)
    assert torch.allclose(out["pred_spans"], alone["pred_spans"], atol=1e-5)


def test_negative_encoder_window_is_a_clear_error(small_config):
    from masra.errors import MasraError

    with pytest.raises(MasraError, match="encoder_window"):
        _model(small_config(encoder_window=-1))


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("parts, checkpointed", [("none", 1 + 2 + 2), ("sora", 1 + 2 + 2 + 1)])
def test_checkpointed_long_inputs_give_the_same_step(small_config, random_batch, monkeypatch, parts, checkpointed,
                                                     chunked):
    """Long training inputs run the video projection, T2V and encoder layers (and SORA) under activation
    checkpointing: same loss and gradients, dropout on; also when the encoder's attention runs in chunks
    (masra.model.chunked_attention, redrawing its dropout noise when the layer is recomputed)."""
    import masra.model.attention as attention
    import masra.model.layers as layers

    chunk_calls = []
    if chunked:  # [2B = 6 pairs, 4 heads, 10 query rows, 10 keys]: chunks of 3, 3, 3 and 1 rows
        monkeypatch.setattr(attention, "MAX_SCORE_ELEMENTS", 6 * 4 * 3 * 10)
        real_chunked = attention.chunked_dropout_attention
        monkeypatch.setattr(attention, "chunked_dropout_attention", lambda *a: chunk_calls.append(1) or real_chunked(*a))
    from masra.config import set_masra_parts

    batch = random_batch([9, 6, 7], [4, 3, 2])

    def step() -> tuple[float, dict[str, torch.Tensor]]:
        model, criterion = _model(set_masra_parts(small_config(), parts))
        torch.manual_seed(7)
        loss = criterion(model.train()(batch), batch)["loss"]
        loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain_loss, plain_grads = step()
    calls = []
    real_checkpoint = layers.checkpoint
    monkeypatch.setattr(layers, "checkpoint", lambda *a, **kw: calls.append(1) or real_checkpoint(*a, **kw))
    monkeypatch.setattr(layers, "CHECKPOINT_MIN_ROWS", 0)
    loss, grads = step()
    assert len(calls) == checkpointed
    assert bool(chunk_calls) == chunked
    assert abs(loss - plain_loss) < 1e-5
    assert grads.keys() == plain_grads.keys()
    assert all(torch.allclose(grads[n], plain_grads[n], atol=1e-5) for n in grads)
