"""The ablation runner: the table it aggregates, its markdown, and resuming (finished runs are skipped)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import TINY_TRAIN, TINY_VAL

from masra.lab.demo.ablation import VARIANTS, markdown_table, run_ablation
from masra.lab.demo.training import KEY_METRICS, VariantResult, enabled_parts
from masra.errors import MasraError


class FakeTrainer:
    """Records what it is asked to train and returns metrics that depend on the variant and the seed."""

    def __init__(self):
        self.calls: list[tuple[str, int, list[str]]] = []
        self.configs: dict[str, object] = {}

    @staticmethod
    def value(variant: str, seed: int, key: str) -> float:
        order = [v.name for v in VARIANTS].index(variant)
        return 10.0 * order + 1.5 * seed * (KEY_METRICS.index(key) + 1)

    def __call__(self, name, cfg):
        self.calls.append((name, cfg.train.seed, enabled_parts(cfg)))
        self.configs[name] = cfg
        brief = {key: self.value(name, cfg.train.seed, key) for key in KEY_METRICS}
        diagnostics = {"diag_sora_beta_h0": 0.5 + cfg.train.seed} if cfg.model.sora.enabled else {}
        return VariantResult(name, enabled_parts(cfg), cfg.train.output_dir, 3, {"brief": brief}, None, 1.0,
                             diagnostics)


def _run(out, trainer, **kwargs):
    defaults = {"seeds": [0, 1, 2], "epochs": 2, "n_train": TINY_TRAIN, "n_val": TINY_VAL, "trainer": trainer}
    return run_ablation(out, **{**defaults, **kwargs})


def test_every_variant_and_seed_is_trained_with_its_parts(tiny_dataset_copy):
    trainer = FakeTrainer()
    table = _run(tiny_dataset_copy.parent, trainer)
    assert len(trainer.calls) == len(VARIANTS) * 3
    parts = {name: p for name, _, p in trainer.calls}
    assert parts["baseline"] == []
    assert parts["sora"] == ["sora"]
    assert parts["all"] == ["dai", "sge", "sora", "esta", "lrca"]
    assert [row["variant"] for row in table["variants"]] == [v.name for v in VARIANTS]
    for row in table["variants"]:
        for key in KEY_METRICS:
            values = [FakeTrainer.value(row["variant"], s, key) for s in (0, 1, 2)]
            assert row["metrics"][key]["mean"] == pytest.approx(np.mean(values))
            assert row["metrics"][key]["std"] == pytest.approx(np.std(values, ddof=1))
    assert json.loads((tiny_dataset_copy.parent / "ablation.json").read_text()) == table


def test_markdown_table_has_one_row_per_variant_with_mean_and_std(tiny_dataset_copy):
    table = _run(tiny_dataset_copy.parent, FakeTrainer(), seeds=[0, 2], variants=["baseline", "all"])
    text = (tiny_dataset_copy.parent / "ablation.md").read_text()
    assert text == markdown_table(table)
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert lines[0] == "| variant | " + " | ".join(KEY_METRICS) + " |"
    assert lines[1] == "|---|" + "---:|" * len(KEY_METRICS)
    baseline = lines[2].strip("|").split("|")
    assert baseline[0].strip() == "baseline"
    first = [FakeTrainer.value("baseline", s, KEY_METRICS[0]) for s in (0, 2)]
    assert baseline[1].strip() == f"{np.mean(first):.2f} ± {np.std(first, ddof=1):.2f}"
    assert lines[3].startswith("| all |")
    assert "training seeds 0, 2" in text


def test_rerun_skips_finished_runs_and_redoes_missing_or_stale_ones(tiny_dataset_copy):
    out = tiny_dataset_copy.parent
    _run(out, FakeTrainer(), variants=["baseline", "dai"])
    again = FakeTrainer()
    _run(out, again, variants=["baseline", "dai"])
    assert again.calls == []
    (out / "runs" / "dai" / "seed1" / "result.json").unlink()
    partial = FakeTrainer()
    table = _run(out, partial, variants=["baseline", "dai"])
    assert partial.calls == [("dai", 1, ["dai"])]
    assert [len(row["runs"]) for row in table["variants"]] == [3, 3]
    longer = FakeTrainer()
    _run(out, longer, variants=["baseline"], epochs=3)  # other epochs: the stored runs do not count
    assert [(name, seed) for name, seed, _ in longer.calls] == [("baseline", 0), ("baseline", 1), ("baseline", 2)]


def test_bad_arguments_are_refused(tiny_dataset_copy):
    with pytest.raises(MasraError, match="unknown variant"):
        _run(tiny_dataset_copy.parent, FakeTrainer(), variants=["baseline", "sgee"])
    with pytest.raises(MasraError, match="seed"):
        _run(tiny_dataset_copy.parent, FakeTrainer(), seeds=[])
    broken = tiny_dataset_copy.parent / "runs" / "baseline" / "seed0"
    broken.mkdir(parents=True)
    (broken / "result.json").write_text("{not json")
    with pytest.raises(MasraError, match="unreadable result file"):
        _run(tiny_dataset_copy.parent, FakeTrainer(), variants=["baseline"])


def test_controls_train_their_part_with_their_overrides_and_diagnostics_are_tabulated(tiny_dataset_copy):
    trainer = FakeTrainer()
    table = _run(tiny_dataset_copy.parent, trainer, seeds=[0, 1], variants=["sora", "sora_beta0", "dai_norel"])
    beta0, norel = trainer.configs["sora_beta0"], trainer.configs["dai_norel"]
    assert enabled_parts(beta0) == ["sora"] and beta0.model.sora.beta_init == 0.0
    assert beta0.model.sora.learnable_beta is False and trainer.configs["sora"].model.sora.learnable_beta is True
    assert enabled_parts(norel) == ["dai"] and norel.loss.dai_relevance == 0.0
    rows = {row["variant"]: row for row in table["variants"]}
    assert rows["sora"]["diagnostics"]["diag_sora_beta_h0"] == {"mean": 1.0, "std": pytest.approx(0.7071, abs=1e-4)}
    assert rows["dai_norel"]["diagnostics"] == {}
    text = (tiny_dataset_copy.parent / "ablation.md").read_text()
    assert "| sora | diag_sora_beta_h0 | 1.0000 ± 0.7071 |" in text


def test_diagnostics_are_read_back_from_the_runs_tensorboard_log(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from masra.lab.demo.diagnostics import read_diagnostics

    writer = SummaryWriter(log_dir=str(tmp_path / "tensorboard"))
    for epoch in (1, 2):
        for name, value in {"loss": 9.0, "loss_lrca": 0.2 * epoch, "loss_lrca_chance": 0.7, "diag_sge_gate": 0.1 * epoch,
                            "loss_span": 1.0}.items():
            writer.add_scalar(f"train/{name}", value, epoch)
        writer.add_scalar("eval/MR-full-mAP", 10.0, epoch)
    writer.close()
    got = read_diagnostics(tmp_path, 2)
    assert got == pytest.approx({"diag_sge_gate": 0.2, "loss_lrca": 0.4, "loss_lrca_chance": 0.7})
    assert read_diagnostics(tmp_path, None) == {} and read_diagnostics(tmp_path / "missing", 1) == {}
