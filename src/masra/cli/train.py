"""``masra train``: train a model from a YAML config, resume a run, or continue a killed one."""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from masra.cli.options import add_overrides_argument
from masra.errors import MasraError
from masra.extras import install_hint

if TYPE_CHECKING:
    from masra.config import Config


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model (single process, or one process per GPU under torchrun)",
        description="Train from a packaged config or YAML file; --set train.lr=2e-4 --set model.sora.enabled=true "
        "overrides single fields. Under `torchrun --nproc_per_node N masra train ...` the processes form one DDP run.",
    )
    parser.add_argument("--config", action="append", default=[], metavar="NAME|YAML",
                        help="packaged config name (see `masra config list`) or YAML file; repeat to merge in "
                        "order (optional with --resume RUN_DIR)")
    parser.add_argument("--output-dir", help="run folder (default: train.output_dir of the config)")
    parser.add_argument("--resume", metavar="RUN_DIR|auto",
                        help="continue RUN_DIR from its last checkpoint; 'auto' continues the output folder when it "
                        "holds one and starts fresh otherwise")
    parser.add_argument("--init-from", metavar="RUN", help="start a new run from RUN's weights (e.g. a converted "
                        "QD-DETR run; its config unless --config is given); parameters RUN lacks (MASRA parts) "
                        "start fresh, listed in OUTPUT_DIR/init_from.json")
    parser.add_argument("--parts", help="MASRA parts to switch on: all, none, or a list like dai,sora")
    parser.add_argument("--force", action="store_true", help="start over in a non-empty run folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--no-tensorboard", action="store_true", help="no TensorBoard scalars in OUTPUT_DIR/tensorboard "
                        f"(they need the tensorboard extra: {install_hint('tensorboard')})")
    add_overrides_argument(parser)
    parser.set_defaults(func=run)


def _load(args: argparse.Namespace) -> Config:
    """The run's config. Merge order (later wins): defaults < --config files in order (each after its
    ``base:``), or the run's own config.yaml with --resume RUN_DIR < --parts < --set overrides < --output-dir."""
    from masra.config import apply_overrides, load_config, set_masra_parts, validate_config
    from masra.checkpoint import CONFIG_FILE, find_checkpoint

    if args.init_from and args.resume:
        raise MasraError("--init-from starts a new run; --resume continues one: give one of them", field="--init-from")
    source = find_checkpoint(args.resume) if args.resume and args.resume != "auto" else None
    init = find_checkpoint(args.init_from) if args.init_from else None
    if init is not None and not args.config:
        if args.output_dir is None:
            raise MasraError("--init-from needs --output-dir for the new run", field="--output-dir")
        cfg = load_config(init / CONFIG_FILE)
    elif source is not None and not args.config:
        # Continue with the run's own resolved config; command-line overrides (e.g. train.epochs) still apply.
        cfg = load_config(source / CONFIG_FILE)
        if args.output_dir is None:
            cfg.train.output_dir = str(source.parent)  # RUN/last -> RUN
    elif args.config:
        cfg = load_config(args.config)
    else:
        raise MasraError("--config is required (or --resume RUN_DIR to continue a run)")
    if args.parts is not None:
        set_masra_parts(cfg, args.parts)
    apply_overrides(cfg, args.overrides)
    if args.output_dir is not None:
        cfg.train.output_dir = args.output_dir
    validate_config(cfg)
    return cfg


def run(args: argparse.Namespace) -> int:
    from masra.train.trainer import train

    cfg = _load(args)
    result = train(cfg, resume=args.resume, force=args.force, progress=not args.no_progress, init_from=args.init_from,
                   tensorboard=not args.no_tensorboard)
    log = logging.getLogger("masra.train")
    if result.best_epoch is not None:
        log.info("best %s %.2f at epoch %d: %s", cfg.train.best_metric, result.best_metric, result.best_epoch,
                 result.best_checkpoint)
    log.info("run folder: %s (%d epochs%s)", result.run_dir, result.epochs_done,
             ", stopped early" if result.stopped_early else "")
    return 0
