"""What every benchmark suite returns, and the few statistics they share.

A suite measures rt-f2f and its baseline in the same run and reports ratios, so figures from a noisy machine still
compare like with like. Every figure carries its unit and sample count; a suite whose component is not built (or
whose hardware is absent) is reported as skipped with the reason, never faked.
"""

from __future__ import annotations

import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    n: int  # samples behind the value
    better: str = "lower"  # lower | higher | none
    note: str = ""


@dataclass
class SuiteResult:
    suite: str
    status: str = "ok"  # ok | skipped | failed
    reason: str = ""
    figures: list[Figure] = field(default_factory=list)
    # named series for plots: {"cdf:<label>": [values], "waterfall": [{stage, start, end}], "delay": {"t": [], "v": []},
    # "fps": {"<backend>": {"batch": [], "fps": []}}}
    series: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, name: str, value: float, unit: str, n: int, better: str = "lower", note: str = "") -> None:
        self.figures.append(Figure(name, float(value), unit, int(n), better, note))

    def add_stats(self, name: str, values: Sequence[float], unit: str, better: str = "lower") -> None:
        """p50 / p95 / mean of a sample, each with the sample's size."""
        arr = np.asarray(values, dtype=float)
        if arr.size == 0:
            return
        self.add(f"{name} p50", float(np.percentile(arr, 50)), unit, arr.size, better)
        self.add(f"{name} p95", float(np.percentile(arr, 95)), unit, arr.size, better)
        self.add(f"{name} mean", float(arr.mean()), unit, arr.size, better)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BenchContext:
    quick: bool = False
    device: str = "cpu"
    out_dir: str = "."
    progress: Callable[[str], None] = lambda message: print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    run: Callable[[BenchContext], SuiteResult]


def skipped(suite: str, reason: str) -> SuiteResult:
    return SuiteResult(suite=suite, status="skipped", reason=reason)


def machine_info() -> dict[str, Any]:
    import os

    info: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def versions(packages: Sequence[str]) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in packages:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def finite(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate, the same normalisation the ASR tests use."""
    from rt_f2f.asr import word_error_rate

    return word_error_rate(reference, hypothesis)
