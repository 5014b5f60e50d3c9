"""``python -m labkit ...``: the course's functions, headless.

Each command group lives in its own module under ``labkit/commands/`` and
exposes ``register(subparsers)``, which adds its parser and sets
``func(args) -> int`` as the handler. A :class:`~labkit.errors.LabkitError`
that escapes a handler is printed as one line (``labkit: <file>: <problem>``)
and the exit status is 2; nothing else is caught.
"""
from __future__ import annotations

import argparse
import importlib
import sys

import labkit
from labkit.commands._args import CommandParser
from labkit.errors import LabkitError

#: Command modules, in the order they appear in ``--help``.
COMMANDS = ("corpus", "midi", "data", "generate", "evaluate", "style", "demo", "pianoroll", "mix", "train", "judge",
            "harmonize", "app")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(   # usage errors are one line, as every other error (exit status 2)
        prog="python -m labkit",
        description="The course's helper package on the command line.",
    )
    parser.add_argument("--version", action="version", version=f"labkit {labkit.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        # A missing command module is a broken install: let its ImportError show, never skip it.
        importlib.import_module(f"labkit.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except LabkitError as exc:
        print(f"labkit: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("labkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
