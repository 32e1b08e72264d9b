"""``masra bench model``: it times the trainer's whole step, and its peaks are whole-process peaks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from masra.lab.bench.measure import process_peak_bytes, reset_process_peak
from masra.lab.bench.model_step import StepSpec, _batches, bench_model, build_steps, compared_specs
from masra.errors import MasraError

MB = 2**20


def _hold(megabytes: int) -> int:
    """Touch ``megabytes`` of memory (numpy: outside torch's allocator) and return the process peak."""
    block = np.ones(megabytes * MB, dtype=np.uint8)
    assert block.sum() == megabytes * MB
    del block
    return process_peak_bytes(torch.device("cpu"))


def test_a_reset_starts_a_new_peak():
    _hold(300)
    reset_process_peak(torch.device("cpu"))
    assert process_peak_bytes(torch.device("cpu")) < _hold(0) + 300 * MB


def test_the_train_step_clips_and_updates_the_parameters_like_the_trainer():
    torch.manual_seed(0)
    model, steps = build_steps(StepSpec("baseline", batch_size=2, clips=8, threads=1))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    steps["train_step"]()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])) <= 0.1 + 1e-6
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert len(changed) > len(before) // 2  # the AdamW step ran


@pytest.mark.parametrize("backbone, title", [("qd_detr", "QD-DETR"), ("moment_detr", "Moment-DETR"),
                                             ("cg_detr", "CG-DETR")])
def test_a_folder_that_is_not_the_anchors_checkout_is_refused(tmp_path, backbone, title):
    anchor = backbone.replace("_", "-")
    with pytest.raises(MasraError, match=f"not a {title} checkout") as err:
        build_steps(StepSpec(anchor, batch_size=2, clips=8, anchor_repo=str(tmp_path), backbone=backbone))
    assert err.value.field == f"--{anchor}-repo"


def test_variants_come_in_table_order_and_the_anchor_needs_its_checkout(tmp_path):
    specs = compared_specs(2, 8, torch.device("cpu"), 1, variants=("masra", "baseline", "masra"))
    assert [s.variant for s in specs] == ["baseline", "masra"]
    assert [s.variant for s in compared_specs(2, 8, torch.device("cpu"), 1, anchor_repo=tmp_path)] == [
        "baseline", "masra", "qd-detr"]
    specs = compared_specs(2, 8, torch.device("cpu"), 1, anchor_repo=tmp_path, backbone="cg_detr")
    assert [(s.variant, s.backbone) for s in specs] == [("baseline", "cg_detr"), ("masra", "cg_detr"),
                                                        ("cg-detr", "cg_detr")]
    with pytest.raises(ValueError, match="needs anchor_repo"):
        compared_specs(2, 8, torch.device("cpu"), 1, variants=("qd-detr",))
    with pytest.raises(ValueError, match="unknown variants"):
        compared_specs(2, 8, torch.device("cpu"), 1, anchor_repo=tmp_path, variants=("qd-detr",), backbone="cg_detr")


@pytest.mark.slow
def test_one_variant_and_one_job_are_timed_alone():
    (row,) = bench_model(batch_size=2, clips=8, device=torch.device("cpu"), repeats=1, threads=1,
                         variants=("masra",), jobs=("train_step",))
    assert row.variant == "masra" and row.inference is None and row.inference_single is None
    step = row.train_step
    assert step.seconds > 0 and step.peak_bytes > 0
    assert step.user_seconds > 0 and step.system_seconds >= 0
    with pytest.raises(ValueError, match="jobs must be some of"):
        bench_model(device=torch.device("cpu"), jobs=("backward",))
    with pytest.raises(ValueError, match="warmup must be >= 0"):
        bench_model(batch_size=2, clips=8, device=torch.device("cpu"), warmup=-1, variants=("masra",))


@pytest.mark.slow
def test_the_onnx_runtime_jobs_run_the_models_export_and_nothing_else():
    """``runtime="onnx"``: the inference jobs run the model's export on onnxruntime, and it computes what the
    torch model does on the same batches; the anchor stays on torch, and training or bf16 are refused."""
    spec = StepSpec("masra", batch_size=3, clips=12, threads=1, runtime="onnx")
    model, steps = build_steps(spec)
    assert set(steps) == {"inference", "inference_single"}
    _, query_only, single = _batches(spec)
    with torch.inference_mode():
        for job, batch in (("inference", query_only), ("inference_single", single)):
            logits, spans, saliency = steps[job]()
            want = model.eval()(batch)
            np.testing.assert_allclose(saliency, want["saliency_scores"].numpy(), atol=1e-4)
            np.testing.assert_allclose(spans, want["pred_spans"].numpy(), atol=1e-4)
            assert logits.shape == tuple(want["pred_logits"].shape)
    specs = compared_specs(2, 8, torch.device("cpu"), 1, anchor_repo="QD-DETR", runtime="onnx")
    assert [(s.variant, s.runtime) for s in specs] == [("baseline", "onnx"), ("masra", "onnx"), ("qd-detr", "torch")]
    for jobs, amp in ((("inference", "train_step"), "none"), (("inference_single",), "bf16")):
        with pytest.raises(ValueError, match="ONNX export is timed on inference_single and inference in float32"):
            bench_model(device=torch.device("cpu"), jobs=jobs, amp=amp, runtime="onnx")
