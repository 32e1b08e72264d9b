"""``masra results``: docs/results.md and the README's headline table, generated from the JSON under
docs/results/ (lab-only: for the project's own checkout); ``add-ablation`` / ``add-bench`` record a result."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "results",
        help="regenerate docs/results.md and the README's headline table from docs/results/*.json (lab)",
        description="Without an action: writes docs/results.md (every ablation and benchmark table) and the "
        "README's headline table (between <!-- results:headline:start --> and <!-- results:headline:end -->) "
        "from the JSON under docs/results/. --check writes nothing and fails when those files differ from what "
        "the JSON gives. add-ablation / add-bench copy a result there with the command and machine that made it.",
    )
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root (default: the current folder)")
    parser.add_argument("--check", action="store_true", help="fail if the committed docs differ from the JSON")
    actions = parser.add_subparsers(dest="results_action", metavar="ACTION")
    for kind, what, source_help in (
        ("ablation", "an ablation", "the output folder of masra ablate (its ablation.json and curves; never its runs "
                                    "or data)"),
        ("bench", "a benchmark", "the JSON file written by masra bench --json FILE ..."),
    ):
        add = actions.add_parser(f"add-{kind}", help=f"record {what} result under docs/results/")
        add.add_argument("source", type=Path, metavar="DIR" if kind == "ablation" else "FILE", help=source_help)
        add.add_argument("--name", required=True, help="entry name (a folder under docs/results/)")
        add.add_argument("--command", required=True, help="the exact command that produced it")
        add.add_argument("--machine", required=True, help="the machine it ran on (CPU/GPU, cores, load)")
        add.add_argument("--replace", action="store_true", help="overwrite an existing entry of this name")
        add.add_argument("--supersedes", metavar="OLD", help="an entry this one replaces as the current result (OLD "
                         "stays on the page, marked, and leaves the README's headline)")
        if kind == "ablation":
            add.add_argument("--not-in-headline", dest="in_headline", action="store_false",
                             help="a check, not a gain (e.g. bf16 against float32): on the results page only")
        add.set_defaults(func=run_add, kind=kind, in_headline=True)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from masra.lab.results import check_results, write_results

    if args.check:
        stale = check_results(args.root)
        for path in stale:
            print(f"{path} differs from what docs/results/ gives: run masra results")
        return 1 if stale else 0
    for path in write_results(args.root):
        print(f"wrote {path}")
    return 0


def run_add(args: argparse.Namespace) -> int:
    from masra.lab.results import add_result

    entry = add_result(args.root, args.kind, args.source, name=args.name, command=args.command,
                       machine=args.machine, replace=args.replace, supersedes=args.supersedes,
                       in_headline=args.in_headline)
    print(f"recorded {entry.folder}; now run masra results")
    return 0
