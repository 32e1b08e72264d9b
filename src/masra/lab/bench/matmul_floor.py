"""``masra bench floor``: how fast a training step could be on this machine, from its matrix products alone.

Every matrix product of one training step (``mm``, ``addmm``, ``bmm``, ``baddbmm``: the projections, FFNs and
their backward) is recorded with its operands, then replayed on its own, in order, with nothing else between
the products. The replay time is a lower bound for the step on this machine as long as the model performs
the same products: whatever else a step does (attention kernels, norms, dropout, the loss, the optimizer)
only adds to it. Dividing that bound by QD-DETR's whole step, timed in the same process, gives the smallest
ratio to QD-DETR any implementation of the same model could reach here without doing fewer products.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map
from torch.utils.flop_counter import flop_registry

from masra.lab.bench.measure import alternating_median_seconds
from masra.lab.bench.model_jobs import QD_DETR
from masra.lab.bench.model_step import build_steps, compared_specs
from masra.lab.bench.table import BenchTable, ms

MATRIX_PRODUCTS = frozenset({"aten.mm", "aten.addmm", "aten.bmm", "aten.baddbmm"})


@dataclass
class RecordedProduct:
    op: Any  # the aten overload
    args: tuple[Any, ...]  # operands, copied (the step's tensors are freed or changed after it)
    kwargs: dict[str, Any]
    flops: int


class _RecordProducts(TorchDispatchMode):
    """Records every matrix product that runs under it, with copies of its operands and its FLOPs."""

    def __init__(self) -> None:
        super().__init__()
        self.products: list[RecordedProduct] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func._overloadpacket
        if str(packet) in MATRIX_PRODUCTS:
            def shape(x: Any) -> Any:
                return x.shape if isinstance(x, torch.Tensor) else x

            flops = flop_registry[packet](*tree_map(shape, args), **tree_map(shape, kwargs), out_val=shape(out))
            copied = tuple(a.detach().clone() if isinstance(a, torch.Tensor) else a for a in args)
            self.products.append(RecordedProduct(func, copied, dict(kwargs), int(flops)))
        return out


def record_products(step: Callable[[], None]) -> list[RecordedProduct]:
    """The matrix products of one call of ``step``, in execution order."""
    recorder = _RecordProducts()
    with recorder:
        step()
    return recorder.products


def replay(products: list[RecordedProduct]) -> Callable[[], None]:
    """A callable that runs ``products`` again, one after the other, and nothing else."""

    def run() -> None:
        for p in products:
            p.op(*p.args, **p.kwargs)

    return run


@dataclass
class FloorRow:
    variant: str
    products: int  # matrix products per training step
    gflop: float  # their floating-point operations, 1e9
    step_seconds: float  # the whole training step (median)
    products_seconds: float  # the products replayed alone (median): a lower bound for the step
    vs_qd_detr: dict[str, float] = field(default_factory=dict)  # step and bound / QD-DETR's step


def bench_floor(
    *,
    batch_size: int = 32,
    clips: int = 75,
    device: torch.device,
    repeats: int = 3,
    threads: int | None = None,
    qd_detr_repo: str | None = None,
) -> list[FloorRow]:
    """Rows for the baseline, MASRA (all parts) and, with ``qd_detr_repo``, QD-DETR's own step: each step and
    its matrix products alone, all timed alternately in this process."""
    specs = compared_specs(batch_size, clips, device, threads, anchor_repo=qd_detr_repo)
    jobs: dict[str, Callable[[], None]] = {}
    counts: dict[str, tuple[int, float]] = {}
    for spec in specs:
        step = build_steps(spec)[1]["train_step"]
        step()  # first call: lazy initialisation (optimizer state) out of the recording
        products = record_products(step)
        jobs[f"{spec.variant} step"] = step
        jobs[f"{spec.variant} products"] = replay(products)
        counts[spec.variant] = (len(products), sum(p.flops for p in products) / 1e9)
    seconds = alternating_median_seconds(jobs, device, repeats=repeats)
    reference = seconds.get(f"{QD_DETR} step")
    rows = []
    for spec in specs:
        step_s, products_s = seconds[f"{spec.variant} step"], seconds[f"{spec.variant} products"]
        ratios = {"step": step_s / reference, "products": products_s / reference} if reference is not None else {}
        rows.append(FloorRow(spec.variant, counts[spec.variant][0], counts[spec.variant][1], step_s, products_s, ratios))
    return rows


def floor_table(rows: list[FloorRow]) -> BenchTable:
    """One row per variant; with a QD-DETR reference (rows carry ``vs_qd_detr``) two ratio columns more."""
    columns = ["variant", "matrix products", "GFLOP", "train step", "products alone", "share of the step"]
    if any(r.vs_qd_detr for r in rows):
        columns += ["step / QD-DETR", "products alone / QD-DETR's step"]
    cells = []
    for r in rows:
        row = [r.variant, str(r.products), f"{r.gflop:.1f}", ms(r.step_seconds), ms(r.products_seconds),
               f"{r.products_seconds / r.step_seconds:.0%}"]
        if r.vs_qd_detr:
            row += [f"{r.vs_qd_detr['step']:.2f}x", f"{r.vs_qd_detr['products']:.2f}x"]
        cells.append(row)
    caption = "products alone: the step's mm/addmm/bmm calls replayed back to back; no step doing them is faster"
    return BenchTable(columns, cells, caption)
