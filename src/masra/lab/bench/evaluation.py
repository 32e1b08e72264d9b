"""``masra bench eval``: the vectorised evaluator against the literal per-query loops, same submission."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from masra.lab.bench.literal_eval import literal_full_metrics
from masra.lab.bench.measure import Measurement, measure
from masra.lab.bench.table import BenchTable, ms, ratio
from masra.eval import eval_submission


@dataclass
class EvalRow:
    queries: int
    vectorised: Measurement  # full official evaluation (every bucket, R1, HL at three levels)
    literal: Measurement  # only MR-full-mAP and HL-min-VeryGood-mAP, written as loops
    agree: bool  # the two agree on the metrics they share


def bench_eval(submission: list[dict[str, Any]], ground_truth: list[dict[str, Any]], *, repeats: int = 3) -> EvalRow:
    cpu = torch.device("cpu")
    vectorised = measure(lambda: eval_submission(submission, ground_truth), cpu, repeats=repeats, memory=False)
    literal = measure(lambda: literal_full_metrics(submission, ground_truth), cpu, repeats=1, warmup=0, memory=False)
    brief = eval_submission(submission, ground_truth)["brief"]
    reference = literal_full_metrics(submission, ground_truth)
    agree = all(brief[key] == float(f"{value:.2f}") for key, value in reference.items())
    return EvalRow(len(submission), vectorised, literal, agree)


def eval_table(rows: list[EvalRow]) -> BenchTable:
    return BenchTable(
        ["queries", "vectorised (all metrics)", "literal loops (2 metrics)", "speed-up", "agree"],
        [[str(r.queries), ms(r.vectorised.seconds), ms(r.literal.seconds), ratio(r.vectorised.seconds, r.literal.seconds),
          str(r.agree)] for r in rows],
    )
