"""The ablation runner: the variants and the protocol it trains, the table it aggregates (last and best epoch,
paired differences with t-intervals), its markdown, and resuming (finished runs are skipped)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import TINY_TRAIN, TINY_VAL
from scipy import stats

from masra.config import MASRA_PARTS
from masra.lab.demo.ablation import PROTOCOL_OVERRIDES, VARIANTS, Variant, custom_variant, run_ablation
from masra.lab.demo.ablation_table import PAIRED_METRICS, markdown_table, paired_interval
from masra.lab.demo.training import KEY_METRICS, VariantResult, enabled_parts
from masra.errors import MasraError

NAMES = [v.name for v in VARIANTS]


class FakeTrainer:
    """Records what it is asked to train and returns metrics that depend on the variant, the seed and the epoch
    (the best epoch 3 is 5 points above the last epoch 4)."""

    def __init__(self):
        self.calls: list[tuple[str, int, list[str]]] = []
        self.configs: dict[str, object] = {}

    @staticmethod
    def value(variant: str, seed: int, key: str, column: str = "last") -> float:
        index = NAMES.index(variant) if variant in NAMES else len(NAMES) + len(variant)  # custom variants too
        noise = (seed * 7 + index * 3) % 5  # per (variant, seed): paired differences vary
        return 10.0 * index + 1.5 * seed * (KEY_METRICS.index(key) + 1) + noise + (5.0 if column == "best" else 0.0)

    def __call__(self, name, cfg):
        self.calls.append((name, cfg.train.seed, enabled_parts(cfg)))
        self.configs[name] = cfg
        best = {key: self.value(name, cfg.train.seed, key, "best") for key in KEY_METRICS}
        last = {key: self.value(name, cfg.train.seed, key) for key in KEY_METRICS}
        diagnostics = {"diag_sora_beta_h0": 0.5 + cfg.train.seed} if cfg.model.sora.enabled else {}
        return VariantResult(name, enabled_parts(cfg), cfg.train.output_dir, 3, {"brief": best}, None, 1.0,
                             diagnostics, last_epoch=4, last_brief=last)


def _run(out, trainer, **kwargs):
    defaults = {"seeds": [0, 1, 2], "epochs": 2, "n_train": TINY_TRAIN, "n_val": TINY_VAL, "trainer": trainer}
    return run_ablation(out, **{**defaults, **kwargs})


def test_variants_are_baseline_each_part_all_all_but_each_part_and_the_controls():
    parts = {v.name: v.parts for v in VARIANTS}
    assert NAMES[:7] == ["baseline", *MASRA_PARTS, "all"]
    assert NAMES[7:12] == [f"all_but_{part}" for part in MASRA_PARTS]
    for part in MASRA_PARTS:
        assert parts[part] == (part,)
        assert set(parts[f"all_but_{part}"]) == set(MASRA_PARTS) - {part}
    assert NAMES[12:] == ["sora_beta0", "sora_const_r2", "dai_norel"]


def test_every_variant_and_seed_is_trained_with_its_parts_and_the_protocol(tiny_dataset_copy):
    trainer = FakeTrainer()
    table = _run(tiny_dataset_copy.parent, trainer)
    assert len(trainer.calls) == len(VARIANTS) * 3
    parts = {name: p for name, _, p in trainer.calls}
    assert parts["baseline"] == [] and parts["sora"] == ["sora"] and parts["all"] == list(MASRA_PARTS)
    assert parts["all_but_sge"] == ["dai", "sora", "esta", "lrca"]
    cfg = trainer.configs["all_but_esta"]
    assert (cfg.train.lr_schedule, cfg.train.warmup_epochs, cfg.train.eval_every) == ("cosine", 1.0, 1)
    assert table["protocol"] == list(PROTOCOL_OVERRIDES) and table["data"] == "planted"
    assert [row["variant"] for row in table["variants"]] == NAMES
    for row in table["variants"]:
        for column in ("last", "best"):
            for key in KEY_METRICS:
                values = [FakeTrainer.value(row["variant"], s, key, column) for s in (0, 1, 2)]
                assert row[column][key]["mean"] == pytest.approx(np.mean(values))
                assert row[column][key]["std"] == pytest.approx(np.std(values, ddof=1))
        assert [(r["last"]["epoch"], r["best"]["epoch"]) for r in row["runs"]] == [(4, 3)] * 3
        assert all("fingerprint" not in r for r in row["runs"])  # kept in each run's result.json
    assert json.loads((tiny_dataset_copy.parent / "ablation.json").read_text()) == table


def test_paired_differences_are_per_seed_differences_at_the_last_epoch(tiny_dataset_copy):
    table = _run(tiny_dataset_copy.parent, FakeTrainer(), variants=["baseline", "sora", "all"])
    rows = {row["variant"]: row for row in table["variants"]}
    assert set(rows["baseline"]["paired"]) == {"all"} and set(rows["all"]["paired"]) == {"baseline"}
    for ref in ("baseline", "all"):
        for key in PAIRED_METRICS:
            differences = [FakeTrainer.value("sora", s, key) - FakeTrainer.value(ref, s, key) for s in (0, 1, 2)]
            assert rows["sora"]["paired"][ref][key] == pytest.approx(paired_interval(differences))
    assert set(rows["sora"]["paired"]["baseline"]) == set(PAIRED_METRICS)


def test_the_t_interval_matches_scipy_on_hand_made_differences():
    differences = [1.0, 2.5, -0.5, 3.0, 1.5]
    got = paired_interval(differences)
    low, high = stats.t.interval(0.95, df=4, loc=np.mean(differences), scale=stats.sem(differences))
    assert got == pytest.approx({"mean": 1.5, "low": low, "high": high, "n": 5})
    assert got["low"] < 0 < got["high"]  # these five seeds do not resolve the difference
    resolved = paired_interval([2.0, 2.2, 1.9, 2.1])
    assert 0 < resolved["low"] < 2.05 < resolved["high"]
    assert paired_interval([3.0]) == {"mean": 3.0, "low": None, "high": None, "n": 1}


def test_markdown_has_last_and_best_columns_and_the_paired_intervals(tiny_dataset_copy):
    table = _run(tiny_dataset_copy.parent, FakeTrainer(), seeds=[0, 2], variants=["baseline", "all"])
    text = (tiny_dataset_copy.parent / "ablation.md").read_text()
    assert text == markdown_table(table)
    tables = [[line for line in block.splitlines() if line.startswith("|")] for block in text.split("\n\n")]
    main, paired = [t for t in tables if t][:2]
    assert main[0] == "| variant | " + " | ".join(f"{k} {c}" for k in KEY_METRICS for c in ("last", "best")) + " |"
    cells = [c.strip() for c in main[2].strip("|").split("|")]
    assert cells[0] == "baseline"
    for column, cell in zip(("last", "best"), cells[1:3]):
        values = [FakeTrainer.value("baseline", s, KEY_METRICS[0], column) for s in (0, 2)]
        assert cell == f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}"
    assert paired[0] == "| variant | " + " | ".join(f"Δ {k} vs {ref}" for ref in ("baseline", "all") for k in PAIRED_METRICS) + " |"
    all_row = [c.strip() for c in paired[3].strip("|").split("|")]
    diff = paired_interval([FakeTrainer.value("all", s, PAIRED_METRICS[0]) - FakeTrainer.value("baseline", s, PAIRED_METRICS[0])
                            for s in (0, 2)])
    assert all_row[:2] == ["all", f"{diff['mean']:+.2f} [{diff['low']:+.2f}, {diff['high']:+.2f}]"]
    assert all_row[3:] == ["-", "-"]  # no difference to itself
    assert "training seeds 0, 2" in text and "train.lr_schedule=cosine" in text


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
    old = out / "runs" / "baseline" / "seed0" / "result.json"
    record = json.loads(old.read_text())
    del record["last"]  # written before results recorded the last epoch
    old.write_text(json.dumps(record))
    rerun = FakeTrainer()
    _run(out, rerun, variants=["baseline"], epochs=3)
    assert [(name, seed) for name, seed, _ in rerun.calls] == [("baseline", 0)]


def test_bad_arguments_are_refused(tiny_dataset_copy):
    with pytest.raises(MasraError, match="unknown variant"):
        _run(tiny_dataset_copy.parent, FakeTrainer(), variants=["baseline", "sgee"])
    with pytest.raises(MasraError, match="seed"):
        _run(tiny_dataset_copy.parent, FakeTrainer(), seeds=[])
    with pytest.raises(MasraError, match="each once"):
        _run(tiny_dataset_copy.parent, FakeTrainer(), seeds=[0, 1, 0])
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


def test_a_custom_variant_is_a_built_in_one_with_more_overrides_paired_with_the_others(tiny_dataset_copy):
    trainer = FakeTrainer()
    weaker = custom_variant(["esta_w025", "all", "loss.esta=0.25", "loss.lrca=0.5"])
    assert weaker == Variant("esta_w025", MASRA_PARTS, ("loss.esta=0.25", "loss.lrca=0.5"))
    control = custom_variant(["beta0_fast", "sora_beta0", "train.lr=2e-3"])
    assert control.overrides == ("model.sora.beta_init=0", "model.sora.learnable_beta=false", "train.lr=2e-3")
    names = ["baseline", "all"]
    table = _run(tiny_dataset_copy.parent, trainer, seeds=[0, 1], variants=names, custom=[weaker])
    assert names == ["baseline", "all"]  # the caller's list is left as it was
    cfg = trainer.configs["esta_w025"]
    assert enabled_parts(cfg) == list(MASRA_PARTS) and (cfg.loss.esta, cfg.loss.lrca) == (0.25, 0.5)
    assert trainer.configs["all"].loss.esta == 1.0
    assert (cfg.train.lr_schedule, cfg.train.eval_every) == ("cosine", 1)  # the protocol applies to it too
    rows = {row["variant"]: row for row in table["variants"]}
    assert list(rows) == ["baseline", "all", "esta_w025"]
    assert rows["esta_w025"]["overrides"] == ["loss.esta=0.25", "loss.lrca=0.5"]
    assert set(rows["esta_w025"]["paired"]) == {"baseline", "all"}
    stored = json.loads((tiny_dataset_copy.parent / "runs" / "esta_w025" / "seed1" / "result.json").read_text())
    assert stored["parts"] == list(MASRA_PARTS) and stored["overrides"] == ["loss.esta=0.25", "loss.lrca=0.5"]


def test_bad_custom_variants_are_refused_before_training(tiny_dataset_copy):
    for spec, message in ((["all"], "NAME BASE"), (["all", "baseline"], "new name"), (["x-y", "all"], "new name"),
                          (["mine", "everything"], "unknown base variant"), (["mine", "all", "loss.nope=1"], "nope")):
        with pytest.raises(MasraError, match=message):
            custom_variant(spec)
    trainer = FakeTrainer()
    twice = custom_variant(["mine", "all"])
    with pytest.raises(MasraError, match="given twice"):
        _run(tiny_dataset_copy.parent, trainer, variants=["all"], custom=[twice, twice])
    assert trainer.calls == []


def test_a_run_recorded_before_esta_source_existed_is_not_reused_as_the_new_default(tiny_dataset_copy):
    """A finished ESTA run whose fingerprint predates model.esta.source trained ESTA on the memory: a rerun
    refuses it instead of counting it as a run of the new default; a baseline run of that time is still reused."""
    out = tiny_dataset_copy.parent
    _run(out, FakeTrainer(), seeds=[0], variants=["baseline", "esta"])
    for variant in ("baseline", "esta"):
        path = out / "runs" / variant / "seed0" / "result.json"
        record = json.loads(path.read_text())
        del record["fingerprint"]["config"]["model"]["esta"]["source"]
        path.write_text(json.dumps(record))
    again = FakeTrainer()
    _run(out, again, seeds=[0], variants=["baseline"])
    assert again.calls == []
    with pytest.raises(MasraError, match="model.esta.source"):
        _run(out, FakeTrainer(), seeds=[0], variants=["esta"])


def test_a_run_recorded_before_sge_back_norm_existed_is_not_reused_as_the_new_default(tiny_dataset_copy):
    """A finished SGE run whose fingerprint predates model.sge.back_norm fused without the layer norm: a rerun
    refuses it instead of counting it as a run of the new default."""
    out = tiny_dataset_copy.parent
    _run(out, FakeTrainer(), seeds=[0], variants=["sge"])
    path = out / "runs" / "sge" / "seed0" / "result.json"
    record = json.loads(path.read_text())
    del record["fingerprint"]["config"]["model"]["sge"]["back_norm"]
    path.write_text(json.dumps(record))
    with pytest.raises(MasraError, match="model.sge.back_norm"):
        _run(out, FakeTrainer(), seeds=[0], variants=["sge"])


def test_another_backbone_trains_its_shipped_layer_on_the_demos_settings(tiny_dataset_copy):
    trainer = FakeTrainer()
    table = _run(tiny_dataset_copy.parent, trainer, seeds=[0], variants=["baseline", "all"], backbone="cg_detr")
    for name in ("baseline", "all"):
        cfg = trainer.configs[name]
        assert cfg.model.backbone == "cg_detr" and cfg.model.cg_detr.num_dummies == 45
        assert cfg.model.hidden_dim == 64 and cfg.train.lr == 1e-3  # the demo's widths and training settings
    assert "cg_detr backbone" in table["source"]
    with pytest.raises(MasraError, match="--backbone"):
        run_ablation(tiny_dataset_copy.parent / "other", seeds=[0], config="qvhighlights", backbone="moment_detr",
                     trainer=FakeTrainer())
