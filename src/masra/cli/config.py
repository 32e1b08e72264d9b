"""``masra config``: list the configs shipped in the package, and print one."""

from __future__ import annotations

import argparse

from masra.cli.options import add_overrides_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "config",
        help="list the packaged configs or print one",
        description="Every command's --config takes a file path or the name of a packaged config "
        "(e.g. --config qvhighlights). See docs/training.md.",
    )
    commands = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    p = commands.add_parser("list", help="the packaged config names, with their dataset and file")
    p.set_defaults(func=run_list)
    p = commands.add_parser("show", help="print a config as it resolves (defaults < base < file < --set)")
    p.add_argument("name", metavar="NAME|PATH", help="packaged config name or YAML file")
    p.add_argument("--file", action="store_true", help="print the YAML file as written (with its comments)")
    add_overrides_argument(p)
    p.set_defaults(func=run_show)


def run_list(args: argparse.Namespace) -> int:
    from masra.config import load_config, packaged_configs

    configs = packaged_configs()
    width = max(map(len, configs)) + 1
    for name, path in configs.items():
        print(f"{name:<{width}} {load_config(path).data.dataset:<20} {path}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    import yaml

    from masra.config import config_to_dict, load_config, resolve_config_path

    if args.file:
        print(resolve_config_path(args.name).read_text(), end="")
        return 0
    cfg = load_config(args.name, args.overrides)
    print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), end="")
    return 0
