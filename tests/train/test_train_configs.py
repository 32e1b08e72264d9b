"""The shipped dataset configs load, validate, point at real annotation files and select on a metric that
the dataset's evaluation actually produces."""

from __future__ import annotations

from pathlib import Path

import pytest

from masra.config import load_config, packaged_configs
from masra.data.annotations import load_annotations
from masra.eval import evaluate
from required import SHARED_DATA, require_path

# The dataset configs; the demo's config has no data of its own (tests/lab/demo/test_demo_config.py).
CONFIGS = [path for name, path in packaged_configs().items() if name != "demo"]
# Annotation paths in the configs are relative to an anchor checkout's data/ folder; shared/data mirrors it
# with one sub-folder per dataset (QVHighlights files sit in data/ directly in the anchors).
SHARED_FOLDER = {"qvhighlights": "qvhighlights"}


def test_every_dataset_has_a_config():
    names = {load_config(path).data.dataset for path in CONFIGS}
    assert names == {"qvhighlights", "charades_sta", "tacos", "tvsum", "youtube_highlights"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads_and_validates(path):
    cfg = load_config(path)
    assert cfg.name == path.stem
    assert cfg.data.train_path and cfg.data.eval_path
    # One run folder per config, and per domain where the dataset trains one model per domain.
    assert cfg.train.output_dir == f"runs/{path.stem}" + (f"_{cfg.data.domain}" if cfg.data.domain else "")


def _shared_annotation(cfg_path: str, dataset: str) -> Path:
    relative = Path(cfg_path).relative_to("data")
    if dataset in SHARED_FOLDER:
        relative = Path(SHARED_FOLDER[dataset]) / relative
    return SHARED_DATA / relative


def _perfect_rows(records):
    rows = []
    for r in records:
        row = {"qid": r.qid, "query": r.query, "vid": r.vid}
        if r.relevant_windows is not None:
            row["pred_relevant_windows"] = [[st, ed, 1.0] for st, ed in r.relevant_windows]
        n_clips = len(r.label) if r.label is not None else int(r.duration // 2)
        row["pred_saliency_scores"] = [float(sum(x)) for x in r.label] if r.label is not None else [0.0] * n_clips
        rows.append(row)
    return rows


@pytest.mark.parametrize("path", [p for p in CONFIGS if p.stem != "masra_qvhighlights"], ids=lambda p: p.name)
def test_best_metric_is_produced_by_the_evaluation_of_the_configured_eval_file(path):
    cfg = load_config(path)
    annotation = _shared_annotation(cfg.data.eval_path, cfg.data.dataset)
    require_path(annotation, "the config's real eval annotations")
    records = load_annotations(annotation, cfg.data.dataset)
    if cfg.data.domain is not None:
        records = [r for r in records if r.domain == cfg.data.domain]
        assert records, f"no rows of domain {cfg.data.domain}"
    records = records[:50]
    metrics = evaluate(cfg.data.dataset, _perfect_rows(records), [r.to_meta() for r in records])
    assert metrics["brief"][cfg.train.best_metric] is not None

