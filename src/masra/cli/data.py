"""``masra data check FILE... [--dataset D]`` and ``masra data pack --src DIR --out STORE [--kind video|text]``."""

from __future__ import annotations

import argparse

from masra.config import DATASETS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="check annotation files, pack feature folders")
    commands = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    check = commands.add_parser("check", help="validate annotation JSONL files and print their statistics")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.add_argument("--dataset", choices=DATASETS, help="format of the files (default: detected from the rows)")
    check.add_argument("--max-errors", type=int, default=100, help="errors kept and printed per file (default 100)")
    check.set_defaults(func=run_check)

    pack = commands.add_parser("pack", help="pack a folder of per-item .npz/.npy features into one memory-mapped store")
    pack.add_argument("--src", required=True, help="folder of {vid}.npz / qid{qid}.npz files")
    pack.add_argument("--out", required=True, help="store folder to create")
    pack.add_argument("--kind", choices=("video", "text"), default="video")
    pack.add_argument("--key", help="npz array to pack (default: features for video, last_hidden_state for text)")
    pack.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    pack.add_argument("--force", action="store_true", help="replace an existing store")
    pack.set_defaults(func=run_pack)


def _fmt(stats: object) -> str:
    return "min {min:.2f}  mean {mean:.2f}  median {median:.2f}  max {max:.2f}".format(**vars(stats))


def run_check(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from masra.data.annotations import check_annotations
    from masra.data.summary import summarize

    console = Console(highlight=False)
    failed = 0
    for path in args.files:
        result = check_annotations(path, args.dataset, max_errors=args.max_errors)
        summary = summarize(result.records)
        table = Table(title=f"{path} ({result.dataset})", show_header=False, title_justify="left")
        table.add_column("what", style="bold")
        table.add_column("value")
        table.add_row("rows", f"{result.n_rows} ({len(result.records)} valid, {summary.labelled} labelled)")
        table.add_row("videos", str(summary.videos))
        table.add_row("queries per video", _fmt(summary.queries_per_video))
        if summary.windows_per_query:
            table.add_row("windows per query", "  ".join(f"{k}: {v}" for k, v in summary.windows_per_query.items()))
            table.add_row("window length (s)", _fmt(summary.window_length_s))
        if summary.label_clips.count:
            table.add_row("label clips per video", _fmt(summary.label_clips))
        table.add_row("duration (s)", _fmt(summary.duration_s))
        table.add_row("duration histogram (s)", "  ".join(f"{k}: {v}" for k, v in summary.duration_histogram.items()))
        if summary.domains:
            table.add_row("domains", "  ".join(f"{k}: {v}" for k, v in summary.domains.items()))
        console.print(table)
        if result.errors:
            failed += 1
            more = " (more not shown)" if result.truncated else ""
            console.print(f"[red]{len(result.errors)} error(s){more}:[/red]")
            for err in result.errors:
                console.print(f"  {err}", markup=False, soft_wrap=True)
        else:
            console.print("[green]OK[/green]: no errors")
    return 1 if failed else 0


def run_pack(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from masra.data.store import pack_features

    manifest = pack_features(
        args.src, args.out, kind=args.kind, key=args.key, dtype=args.dtype, force=args.force,
        progress=lambda items: tqdm(items, desc="checking", unit="file"),
    )
    print(
        f"packed {manifest['count']} items ({manifest['rows']} rows x {manifest['dim']}, {manifest['dtype']}) "
        f"into {args.out}; sha256 {manifest['data_sha256'][:16]}…"
    )
    return 0
