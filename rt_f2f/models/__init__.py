"""Named models and where they live on disk (see ``store``)."""

from .registry import REGISTRY, ModelSpec
from .store import ModelStore, get_store, model_path

__all__ = ["REGISTRY", "ModelSpec", "ModelStore", "get_store", "model_path"]
