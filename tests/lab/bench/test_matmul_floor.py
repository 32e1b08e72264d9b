"""``masra bench floor``: the recorded products are exactly the step's matrix products, and replaying them
recomputes the same results."""

from __future__ import annotations

import torch

from masra.lab.bench.matmul_floor import bench_floor, record_products, replay
from masra.lab.bench.model_step import StepSpec, build_steps


def test_a_linear_layers_forward_and_backward_are_three_products_of_known_flops():
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 8)
    x = torch.randn(5, 16, requires_grad=True)

    def step() -> None:
        layer(x).square().sum().backward()

    products = record_products(step)
    # forward x @ W^T (+ bias: addmm), backward grad_x = g @ W and grad_W = g^T @ x: 2 * 5 * 16 * 8 FLOPs each
    assert len(products) == 3
    assert [p.flops for p in products] == [2 * 5 * 16 * 8] * 3
    assert str(products[0].op._overloadpacket) == "aten.addmm"


def test_replayed_products_recompute_the_recorded_results_from_copies_of_their_operands():
    a, b = torch.randn(6, 4), torch.randn(4, 3)
    expected = torch.mm(a, b)
    products = record_products(lambda: torch.mm(a, b))
    a.zero_()  # the recording holds copies: changing the step's tensors afterwards does not change the replay
    (product,) = products
    torch.testing.assert_close(product.op(*product.args, **product.kwargs), expected)
    replay(products)()


def test_every_model_step_has_products_and_masra_does_more_flops_than_the_baseline():
    rows = {r.variant: r for r in bench_floor(batch_size=2, clips=8, device=torch.device("cpu"), repeats=1, threads=1)}
    assert set(rows) == {"baseline", "masra"}
    for row in rows.values():
        assert row.products > 0 and row.gflop > 0
        assert row.step_seconds > 0 and row.products_seconds > 0
        assert row.vs_qd_detr == {}  # no reference without a QD-DETR checkout
    assert rows["masra"].gflop > rows["baseline"].gflop
    # the same recording of the baseline's step, made directly, counts the same products
    step = build_steps(StepSpec("baseline", 2, 8, threads=1))[1]["train_step"]
    step()
    assert len(record_products(step)) == rows["baseline"].products
