"""Entry point of the ``masra`` command. Each subcommand lives in ``masra.cli.<name>`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (called with the parsed args, returns an
exit code). Subcommand modules import heavy libraries (torch, transformers) inside their functions so
that ``masra --help`` and ``masra evaluate`` start fast, and the commands that need an extra check it there
(masra.extras). A command line that names its subcommand registers that one only: ``masra train`` imports
nothing of the other commands (the lab's ``demo`` and ``ablate`` read their choices from masra.lab).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from masra import __version__
from masra.errors import MasraError

SUBCOMMANDS = ("config", "evaluate", "data", "train", "predict", "demo", "priors", "ablate", "results", "bench", "features", "convert", "export", "serve")


def named_command(argv: list[str]) -> str | None:
    """The subcommand ``argv`` names (its first word that is not an option), or None: none named, an unknown
    one, or a help request before it."""
    for arg in argv:
        if arg in ("-h", "--help"):
            return None
        if not arg.startswith("-"):
            return arg if arg in SUBCOMMANDS else None
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``command`` alone, or of every subcommand (for help and unknown commands)."""
    parser = argparse.ArgumentParser(
        prog="masra",
        description="MASRA video temporal grounding: moment retrieval and highlight detection.",
    )
    parser.add_argument("--version", action="version", version=f"masra {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in (command,) if command else SUBCOMMANDS:
        importlib.import_module(f"masra.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(named_command(argv))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except MasraError as err:
        print(f"masra {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"masra {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
