"""Named models and where they live on disk (see ``store``).

The names below load on first use (PEP 562): ``rt-f2f models --help`` imports ``rt_f2f.models.cli``, and with it
this package, without the store's HTTP and hashing code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .registry import REGISTRY, ModelSpec
    from .store import ModelStore, get_store, model_path

_HOMES = {"REGISTRY": "registry", "ModelSpec": "registry", "ModelStore": "store", "get_store": "store",
          "model_path": "store"}  # fmt: skip

__all__ = ["REGISTRY", "ModelSpec", "ModelStore", "get_store", "model_path"]


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
