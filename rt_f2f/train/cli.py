"""``rt-f2f train NETWORK``: training on a preprocessed dataset (layout in :mod:`rt_f2f.train.dataset`).

Each network's module adds its own parser (``add_train_parser``) and loads torch only when it runs, so ``--help``
stays instant.
"""

from __future__ import annotations

import argparse
from typing import Any

from .lipgan import add_train_parser as add_lipgan


def add_subcommand(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="train a lip-sync network on your own footage",
        description="Train a lip-sync network on a dataset of face frames and audio (DATA/<group>/<clip>/N.jpg, "
        "audio.wav, train.txt, val.txt).",
    )
    sub = p.add_subparsers(dest="network", metavar="NETWORK", required=True)
    add_lipgan(sub)
    return p
