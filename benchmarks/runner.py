"""Runs the suites ``rt-f2f bench`` asks for and returns one results dict (the schema ``rt_f2f.bench`` checks).

A suite that cannot be imported is skipped with the reason, and one that raises is reported as failed with its
error; either way the others still run.
"""

from __future__ import annotations

import importlib
import time
import traceback
from pathlib import Path
from typing import Any

from benchmarks import SUITE_MODULES
from benchmarks.common import BenchContext, SuiteResult, machine_info, skipped, versions
from rt_f2f.errors import RtF2fError

PACKAGES = (
    "rt-f2f", "numpy", "torch", "onnxruntime", "ctranslate2", "faster-whisper", "piper-tts", "kokoro-onnx",
    "aiortc", "av", "mediapipe",
)  # fmt: skip


def run_suites(names: list[str] | None, quick: bool, device: str, out_dir: Path) -> dict[str, Any]:
    modules = SUITE_MODULES
    unknown = [n for n in names or [] if n not in modules]
    if unknown:
        raise RtF2fError(f"unknown suite(s): {', '.join(unknown)}", "known suites: " + ", ".join(modules))
    ctx = BenchContext(quick=quick, device=device, out_dir=str(out_dir))
    results = []
    selected = names or list(modules)
    for i, name in enumerate(selected, 1):
        ctx.progress(f"[bench {i}/{len(selected)}] {name} ...")
        start = time.perf_counter()
        try:
            module = importlib.import_module(modules[name])
        except ImportError as exc:
            result = skipped(name, f"component not built or not importable: {exc}")
        else:
            try:
                result = module.SUITE.run(ctx)
            except Exception as exc:  # a broken suite must not hide the others
                result = SuiteResult(suite=name, status="failed", reason=f"{type(exc).__name__}: {exc}")
                ctx.progress(traceback.format_exc())
        result.seconds = time.perf_counter() - start
        ctx.progress(f"[bench {i}/{len(selected)}] {name}: {result.status} in {result.seconds:.1f} s")
        results.append(result)
    return {
        "schema": "rt-f2f-bench/1",
        "machine": machine_info(),
        "versions": versions(PACKAGES),
        "settings": {"quick": quick, "device": device, "suites": selected},
        "suites": [r.to_json() for r in results],
    }
