"""``masra ablate``: the MASRA ablation (baseline, each part alone, all parts, all but one, controls) over paired
seeds, on the demo data (either regime) or on any training config, with learning curves."""

from __future__ import annotations

import argparse
import logging

from masra.cli.options import add_backbone_argument, add_overrides_argument
from masra.extras import require_extra


def register(subparsers: argparse._SubParsersAction) -> None:
    from masra.lab.demo.ablation import DEFAULT_SEEDS, PROTOCOL_OVERRIDES, VARIANTS
    from masra.lab.demo.regimes import DEFAULT_REGIME, REGIMES
    from masra.lab.demo.training import DEFAULT_EPOCHS

    names = ", ".join(variant.name for variant in VARIANTS)
    parser = subparsers.add_parser(
        "ablate",
        help="ablation table and learning curves on the demo data or any training config (resumable)",
        description="Trains every variant for every seed, on the synthetic demo dataset (--data) or with a "
        "training config's data and settings (--config), with the protocol's settings "
        f"({' '.join(PROTOCOL_OVERRIDES)}; --set wins), and writes DIR/ablation.json and DIR/ablation.md "
        "(mean ± std over seeds at the last and at the best epoch, each variant's paired difference to baseline "
        "and to all with a 95 % t-interval, the parts' training diagnostics) and the learning curves "
        "DIR/curves.{md,json,png} (val metrics per epoch). Runs of one seed share the data order and the "
        "dropout stream. Finished runs are skipped, so an interrupted "
        f"ablation continues where it stopped. Variants: {names} (all_but_X: every part but X; sora_beta0: SORA "
        "with β fixed at 0; sora_const_r2: SORA with R2 replaced by its row mean; dai_norel: DAI without its "
        "relevance loss).",
    )
    parser.add_argument("--out", required=True, help="output folder (dataset cache, runs, tables)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS),
                        help=f"training seeds (default {' '.join(map(str, DEFAULT_SEEDS))})")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"epochs per run (default {DEFAULT_EPOCHS} on demo data, the config's with --config)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data", choices=list(REGIMES), default=None,
                        help=f"regime of the generated demo data (default {DEFAULT_REGIME})")
    source.add_argument("--config", metavar="NAME|FILE",
                        help="train on this config's data and settings instead (packaged name or YAML path)")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic dataset (default 0)")
    parser.add_argument("--variants", nargs="+", metavar="NAME", help=f"subset of: {names}")
    parser.add_argument("--variant", nargs="+", action="append", default=[], metavar="NAME BASE [KEY=VALUE]",
                        help="one more row: the built-in variant BASE with these overrides, named NAME, e.g. "
                        "--variant esta_w025 all loss.esta=0.25 (repeatable; trained after the --variants)")
    parser.add_argument("--train-rows", type=int, help="use only the first N shipped training rows")
    parser.add_argument("--val-rows", type=int, help="use only the first N shipped val rows")
    parser.add_argument("--workers", type=int, default=None, help="runs trained side by side (default: 1 per core, at most 2)")
    add_backbone_argument(parser)
    add_overrides_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    require_extra("lab", "masra ablate")
    from pathlib import Path

    from rich.console import Console
    from rich.markdown import Markdown

    from masra.lab.demo.ablation import custom_variant, run_ablation
    from masra.lab.demo.training import default_workers

    logging.getLogger("masra").setLevel(logging.INFO)
    run_ablation(
        args.out,
        seeds=args.seeds,
        epochs=args.epochs,
        data_seed=args.data_seed,
        variants=args.variants,
        custom=[custom_variant(spec) for spec in args.variant],
        n_train=args.train_rows,
        n_val=args.val_rows,
        overrides=args.overrides,
        workers=default_workers() if args.workers is None else args.workers,
        data=args.data,
        config=args.config,
        backbone=args.backbone,
    )
    console = Console()
    console.print(Markdown((Path(args.out) / "ablation.md").read_text()))
    console.print(f"learning curves (val metrics per epoch): {Path(args.out) / 'curves.md'}, {Path(args.out) / 'curves.png'}")
    return 0
