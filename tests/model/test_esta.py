"""ESTA: span attention-pooling, symmetric InfoNCE and the multi-positive clip-to-event term."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from masra.model.parts.esta import EventSemanticAlignment, esta_loss

D, DS = 16, 12


def make(learnable: bool = True) -> EventSemanticAlignment:
    torch.manual_seed(0)
    return EventSemanticAlignment(D, DS, temperature=0.07, learnable_temperature=learnable)


def sample(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    memory = torch.randn(2, 8, D, generator=gen)
    video_mask = torch.ones(2, 8)
    video_mask[1, 6:] = 0
    spans = torch.tensor([[[0, 2], [2, 5], [6, 7]], [[1, 3], [7, 7], [0, 0]]])  # event (1,1) only in padding
    event_mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    event_emb = F.normalize(torch.randn(2, 3, DS, generator=gen), dim=-1)
    return memory, video_mask, spans, event_mask, event_emb


def test_pooling_uses_only_clips_inside_the_span() -> None:
    esta = make()
    memory, video_mask, spans, _, _ = sample()
    out = esta(memory, video_mask, spans)
    assert out["esta_event_proj"].shape == (2, 3, DS) and out["esta_clip_proj"].shape == (2, 8, DS)
    assert out["esta_event_in_video"].tolist() == [[1.0, 1.0, 1.0], [1.0, 0.0, 1.0]]
    changed = memory.clone()
    changed[0, 6:] = 9.0  # outside events 0 and 1 of sample 0
    out2 = esta(changed, video_mask, spans)
    torch.testing.assert_close(out2["esta_event_proj"][0, :2], out["esta_event_proj"][0, :2])
    assert not torch.allclose(out2["esta_event_proj"][0, 2], out["esta_event_proj"][0, 2])
    # One-clip event: the pooled vector is that clip.
    torch.testing.assert_close(out["esta_event_proj"][1, 2], esta.projection(memory[1, 0]))


def reference_loss(out, event_emb, event_mask, weight, video_ids=None):
    """Loop-based InfoNCE + clip-to-event with explicit positives and the "no event" slot."""
    tau = out["esta_temperature"]
    valid = event_mask.bool() & out["esta_event_in_video"].bool()
    video_ids = list(range(event_emb.shape[0])) if video_ids is None else video_ids
    index = [(video_ids[b], k) for b in range(valid.shape[0]) for k in range(valid.shape[1]) if valid[b, k]]
    pred = F.normalize(out["esta_event_proj"][valid], dim=-1)
    text = F.normalize(event_emb[valid], dim=-1)
    logits = pred @ text.t() / tau
    n = logits.shape[0]
    nce_terms = []
    for i in range(n):
        keep = [j for j in range(n) if j == i or index[j] != index[i]]  # copies of event i are no negatives
        row, col = logits[i, keep], logits[keep, i]
        nce_terms.append(-row.log_softmax(0)[keep.index(i)] - col.log_softmax(0)[keep.index(i)])
    nce = sum(nce_terms) / (2 * n)
    terms = []
    span_mask = out["esta_span_mask"]
    for b in range(event_emb.shape[0]):
        ks = [k for k in range(event_emb.shape[1]) if valid[b, k]]
        if not ks:
            continue
        for i in range(span_mask.shape[2]):
            if not out["esta_clip_mask"][b, i]:
                continue
            cos = torch.stack([F.cosine_similarity(out["esta_clip_proj"][b, i], event_emb[b, k], dim=0) for k in ks])
            log_p = torch.cat([cos / tau, out["esta_null_logit"].view(1)]).log_softmax(0)
            pos = [ks.index(k) for k in ks if span_mask[b, k, i]] or [len(ks)]  # outside every event: "no event"
            terms.append(-torch.logsumexp(log_p[pos], 0))
    clip = torch.stack(terms).mean()
    return nce, clip, nce + weight * clip


def test_loss_matches_loop_reference_with_overlapping_events() -> None:
    esta = make()
    memory, video_mask, spans, event_mask, event_emb = sample()
    out = esta(memory, video_mask, spans)
    got = esta_loss(out, event_emb, event_mask, torch.ones(2), clip_event_weight=0.5)
    nce, clip, total = reference_loss(out, event_emb, event_mask, 0.5)
    torch.testing.assert_close(got["esta_nce"], nce)
    torch.testing.assert_close(got["esta_clip_event"], clip)
    torch.testing.assert_close(got["esta"], total)
    assert got["esta_nce_chance"].item() == pytest.approx(math.log(4))  # 4 valid events in the batch
    assert 0 < got["esta_clip_event_chance"].item() < math.log(4)


def test_a_video_twice_in_the_batch_is_not_its_own_negative() -> None:
    esta = make()
    memory, video_mask, spans, event_mask, event_emb = sample()
    memory[1], video_mask[1], spans[1], event_mask[1], event_emb[1] = memory[0], 1, spans[0], event_mask[0], event_emb[0]
    memory[1, :4] += 0.5  # another query of the same video: another memory, the same events
    out = esta(memory, video_mask, spans)
    same = esta_loss(out, event_emb, event_mask, None, video_ids=torch.tensor([0, 0]))
    nce, _, _ = reference_loss(out, event_emb, event_mask, 1.0, video_ids=[0, 0])
    torch.testing.assert_close(same["esta_nce"], nce)
    apart = esta_loss(out, event_emb, event_mask, None)  # counted as different videos, the copies compete
    assert apart["esta_nce"].item() > same["esta_nce"].item() + 0.1
    assert same["esta_nce_chance"].item() == pytest.approx(math.log(6 - 1))  # 6 events less the copy


def test_clips_outside_every_event_are_pushed_away_from_the_events() -> None:
    esta = make()
    memory, video_mask, spans, event_mask, event_emb = sample()
    out = esta(memory, video_mask, spans)
    base = esta_loss(out, event_emb, event_mask, None)["esta_clip_event"]
    changed = memory.clone()
    changed[1, 4:6] += 3.0  # clips 4 and 5 of sample 1 lie in no event
    moved = esta_loss(esta(changed, video_mask, spans), event_emb, event_mask, None)["esta_clip_event"]
    assert abs(moved.item() - base.item()) > 1e-4
    with torch.no_grad():  # an outside clip that matches an event costs more than one that matches none
        esta.null_logit.fill_(-5.0)
    worse = esta_loss(esta(memory, video_mask, spans), event_emb, event_mask, None)["esta_clip_event"]
    assert worse.item() > base.item()


def test_samples_without_priors_are_skipped() -> None:
    esta = make()
    memory, video_mask, spans, event_mask, event_emb = sample()
    out = esta(memory, video_mask, spans)
    only_first = esta_loss(out, event_emb, event_mask, torch.tensor([1.0, 0.0]))
    masked = event_mask.clone()
    masked[1] = 0
    torch.testing.assert_close(only_first["esta"], esta_loss(out, event_emb, masked, None)["esta"])


def test_no_events_gives_zero_loss() -> None:
    esta = make()
    memory, video_mask, spans, event_mask, event_emb = sample()
    for out, emb, mask in [
        (esta(memory, video_mask, None), None, None),
        (esta(memory, video_mask, spans[:, :0]), event_emb[:, :0], event_mask[:, :0]),
        (esta(memory, video_mask, spans), event_emb, torch.zeros_like(event_mask)),
    ]:
        loss = esta_loss(out, emb, mask, None)
        assert all(torch.isfinite(v) and v.item() == 0.0 for v in loss.values())


def test_single_event_and_fixed_temperature() -> None:
    esta = make(learnable=False)
    assert not any(n == "log_temperature" for n, _ in esta.named_parameters())
    memory, video_mask, spans, event_mask, event_emb = sample()
    out = esta(memory[:1], video_mask[:1], spans[:1, :1])
    assert abs(out["esta_temperature"].item() - 0.07) < 1e-6
    loss = esta_loss(out, event_emb[:1, :1], event_mask[:1, :1], None)
    # One event: it is its own only candidate, the InfoNCE is exactly zero (and so is its chance level).
    assert abs(loss["esta_nce"].item()) < 1e-6 and loss["esta_nce_chance"].item() == 0.0
    assert loss["esta_clip_event"].item() > 0  # the clips still choose between the event and "no event"


def test_gradients_and_training_separates_events() -> None:
    esta = make()
    memory, video_mask, spans, event_mask, event_emb = sample()
    memory.requires_grad_(True)
    out = esta(memory, video_mask, spans)
    esta_loss(out, event_emb, event_mask, None)["esta"].backward()
    assert memory.grad.abs().sum() > 0
    for name, p in esta.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    optimizer = torch.optim.Adam(esta.parameters(), lr=1e-2)
    memory = memory.detach()
    first = None
    for _ in range(40):
        optimizer.zero_grad()
        loss = esta_loss(esta(memory, video_mask, spans), event_emb, event_mask, None)["esta_nce"]
        first = loss.item() if first is None else first
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * first and first > 0.1 * math.log(4)
