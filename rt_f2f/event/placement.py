"""Ray as the event's placement and control plane: where translators run, and whether there is room for them.

A single-machine event starts a local Ray instance (``connect(None)``); ``--ray-address`` joins a cluster whose
nodes have rt-f2f installed. Each translator asks for one GPU when the cluster has GPUs, else a share of CPU cores
(``--translator-cpus``), so Ray's scheduler spreads languages over nodes and refuses nothing silently: a language
that does not fit is refused up front with what is short, instead of waiting forever for a free GPU.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import RtF2fError

log = logging.getLogger(__name__)

WORKER_NICENESS = 0  # translators run at the event process's own priority (Ray's default adds 15)


class ResourceShortError(RtF2fError):
    """The cluster cannot hold another translator."""


@dataclass(frozen=True)
class TranslatorResources:
    num_cpus: float
    num_gpus: float

    def describe(self) -> str:
        return f"{self.num_gpus:g} GPU" if self.num_gpus else f"{self.num_cpus:g} CPU"


def connect(address: str | None, num_cpus: int | None = None) -> dict[str, float]:
    """Join ``address`` or start a local instance; returns the cluster's total resources."""
    import ray

    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
        if address is None:
            # workers import the same rt_f2f as this process (a source checkout works without installing)
            root = str(Path(__file__).resolve().parents[2])
            path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
            kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": path}}
            kwargs["num_cpus"] = num_cpus
            # Ray nices its workers by 15 so its own daemons win; our workers are the speech path, and at nice 15
            # a busy machine starved them (busy-core CI: a translator got 0.015 core, its listeners minutes behind)
            kwargs["_system_config"] = {"worker_niceness": WORKER_NICENESS}
        else:
            kwargs["address"] = address
        try:
            ray.init(**kwargs)
        except ConnectionError as exc:
            raise RtF2fError(f"cannot join the Ray cluster at {address}: {exc}",
                             "check `ray status` on the head node, or drop --ray-address for a local instance") from exc  # fmt: skip
    return dict(ray.cluster_resources())


def per_translator(cpus: float) -> TranslatorResources:
    """One GPU each where the cluster has GPUs, otherwise ``cpus`` cores each."""
    import ray

    gpus = ray.cluster_resources().get("GPU", 0.0)
    return TranslatorResources(num_cpus=1.0 if gpus else cpus, num_gpus=1.0 if gpus else 0.0)


def check_room(languages: list[str], need: TranslatorResources, available: dict[str, float] | None = None) -> None:
    """Refuse, naming what is short, when ``languages`` more translators do not fit in what is free now."""
    if not languages:
        return
    if available is None:
        import ray

        available = dict(ray.available_resources())
    n = len(languages)
    for key, each in (("GPU", need.num_gpus), ("CPU", need.num_cpus)):
        want, have = each * n, available.get(key, 0.0)
        if want > have + 1e-9:
            raise ResourceShortError(
                f"not enough {key} for {n} more translator(s) ({', '.join(languages)}): they need {want:g} {key}, "
                f"the Ray cluster has {have:g} free",
                "drop a language, join a larger cluster with --ray-address, or lower --translator-cpus",
            )


def spawn(spec: Any, need: TranslatorResources, name: str) -> Any:
    """Create one translator actor with its resource request (Ray places it)."""
    from .translator import translator_actor_class

    actor_class = translator_actor_class()
    return actor_class.options(num_cpus=need.num_cpus, num_gpus=need.num_gpus, name=name).remote(spec)


def shutdown() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
