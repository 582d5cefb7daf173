"""The ``rt-f2f`` command line.

Each subcommand lives beside the code it drives and registers itself through ``add_subcommand(subparsers)``;
this module only collects them, so importing the CLI stays cheap (heavy libraries load inside ``run``).
Every ``RtF2fError`` becomes one clear message on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from . import __version__
from .errors import RtF2fError

# module paths that define add_subcommand(subparsers); a module that is missing is simply not offered
SUBCOMMAND_MODULES = (
    "rt_f2f.models.cli",
    "rt_f2f.transcribe",
    "rt_f2f.speechcmd",
    "rt_f2f.lipsync.filecmd",
    "rt_f2f.train.preprocess",
    "rt_f2f.train.cli",
    "rt_f2f.translate",
    "rt_f2f.server.cli",
    "rt_f2f.camera.command",
    "rt_f2f.bench",
    "rt_f2f.event.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rt-f2f",
        description="Real-time face-to-face translation: translated speech in your voice, with lips that match.",
    )
    parser.add_argument("--version", action="version", version=f"rt-f2f {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what each stage does")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue  # that part of the product is not built yet
            raise
        module.add_subcommand(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except RtF2fError as exc:
        print(f"rt-f2f: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("rt-f2f: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
