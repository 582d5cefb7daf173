"""``rt-f2f models list | pull NAME | path NAME``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .store import ModelStore


def _store() -> ModelStore:
    """The model store, imported when a models command runs (not for ``--help``)."""
    from .store import get_store

    return get_store()


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return "?"


def run_list(args: argparse.Namespace) -> int:
    store = _store()
    rows = [("NAME", "KIND", "STATUS", "SIZE", "LICENCE", "SOURCE")]
    for st in store.list():
        spec = st.spec
        status = {"env": "local path", "cache": "ready", "package": "installed", "missing": "not pulled"}[st.where]
        rows.append((spec.name, spec.kind, status, _size(spec.size_bytes), spec.licence, spec.source.describe()))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:5], widths, strict=False)) + "  " + r[5])
    print(f"\ncache: {store.home / 'models'}")
    from .plan import print_table

    print_table()
    return 0


def run_pull(args: argparse.Namespace) -> int:
    store = _store()
    for name in args.names:
        path = store.pull(name, progress=True)
        print(f"{name}: {path}")
    return 0


def run_path(args: argparse.Namespace) -> int:
    print(_store().path(args.name))
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    models = subparsers.add_parser("models", help="list, pull and locate models")
    sub = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    sub.add_parser(
        "list", help="every known model, its status, licence and source, and which model each stage uses per language"
    ).set_defaults(func=run_list)
    pull = sub.add_parser("pull", help="fetch models into the cache (needs internet for hub models)")
    pull.add_argument("names", nargs="+", metavar="NAME")
    pull.set_defaults(func=run_pull)
    path = sub.add_parser("path", help="print where a model lives on disk")
    path.add_argument("name", metavar="NAME")
    path.set_defaults(func=run_path)
