"""Lip-sync suite: Wav2Lip generator throughput per backend and batch size against the original inference loop's
batched torch call (``bench_lipsync``), and the whole ``rt-f2f lipsync`` file command against a re-creation of the
original ``inference.py`` loop (``bench_lipsync_file``), both baselines measured in the same run.

Weights are random in the released checkpoint format (no Wav2Lip weights install here): throughput does not depend
on weight values, and nothing here says anything about lip-sync quality. With ``--quick`` the original loop's call
runs once at batch 16 instead of three times at its default 128 (one batch of 128 costs ~15 s on two cores; its
per-frame cost barely depends on the batch at these sizes on a CPU), only the default backend (the one the live
pipeline uses) is swept, and the file command runs on a 0.8 s clip.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import BenchContext, Suite, SuiteResult, skipped

TESTS = Path(__file__).resolve().parents[1] / "tests"
QUICK_BATCHES = (1, 8)
QUICK_BASELINE_BATCH = 16
QUICK_FILE_SECONDS = 0.8
FULL_FILE_SECONDS = 4.0  # the clip builder's photo drifts 0.8 px per frame: past ~5 s the face leaves the frame


def shared_checkpoint() -> Path:
    """One random-weight Wav2Lip checkpoint per process (the tests' helper), shared with the pipeline suite."""
    sys.path.insert(0, str(TESTS))
    try:
        from lipsync_fixtures import shared_checkpoint as make
    finally:
        sys.path.remove(str(TESTS))
    return make()


def _quick_baseline(checkpoint: Path, batch: int) -> dict[str, Any]:
    """One timed call of the original loop's per-batch work (after a small warm-up call)."""
    import time

    from benchmarks.bench_lipsync import baseline_call
    from rt_f2f.lipsync.checkpoint import load_wav2lip

    model = load_wav2lip(checkpoint, "cpu")
    baseline_call(model, 2)()  # first call pays torch's lazy initialisation
    call = baseline_call(model, batch)
    start = time.perf_counter()
    call()
    wall = time.perf_counter() - start
    return {"backend": "original loop (torch fp32)", "batch": batch, "fps": batch / wall, "frames": batch}


def generator(ctx: BenchContext, result: SuiteResult, checkpoint: Path) -> None:
    from benchmarks.bench_lipsync import BASELINE_BATCH, BATCH_SIZES, run_benchmark
    from rt_f2f.lipsync.backends import available_backends, default_backend

    backends = [default_backend()] if ctx.quick else available_backends()
    batches = QUICK_BATCHES if ctx.quick else BATCH_SIZES
    with tempfile.TemporaryDirectory(prefix="rt-f2f-bench-lipsync-") as tmp:
        report = run_benchmark(
            checkpoint,
            backends,
            batches,
            seconds=0.3 if ctx.quick else 5.0,
            baseline=not ctx.quick,
            cache_dir=Path(tmp) / "engines",
            progress=lambda m: ctx.progress(f"  lipsync {m}"),
        )
    base = report.get("baseline") or _quick_baseline(checkpoint, QUICK_BASELINE_BATCH)
    result.settings["generator"] = {
        "backends": backends,
        "batches": list(batches),
        "baseline_batch": base["batch"],
        "original_batch": BASELINE_BATCH,
        "threads": report["settings"]["threads"],
    }
    result.add(f"generator fps, {base['backend']} batch {base['batch']} (baseline)", base["fps"], "frames/s",
               base["frames"], "higher")  # fmt: skip
    curves: dict[str, dict[str, list]] = {}
    for row in report["results"]:
        name, batch = row["backend"], row["batch"]
        result.add(f"generator fps, {name} batch {batch}", row["fps"], "frames/s", row["frames"], "higher")
        result.add(f"generator CPU per frame, {name} batch {batch}", row["cpu_ms_per_frame"], "ms", row["frames"])
        curve = curves.setdefault(name, {"batch": [], "fps": []})
        curve["batch"].append(batch)
        curve["fps"].append(row["fps"])
    for name, curve in curves.items():
        result.series[f"fps:{name}"] = curve
    result.series["fps:original loop (baseline)"] = {"batch": [base["batch"]], "fps": [base["fps"]]}
    if report["results"]:
        best = max(report["results"], key=lambda r: r["fps"])
        result.add(
            "best generator fps / baseline fps",
            best["fps"] / base["fps"],
            "x",
            best["frames"],
            "higher",
            note=f"{best['backend']} at batch {best['batch']}",
        )
        at8 = [r for r in report["results"] if r["batch"] == 8]
        if at8:
            fastest = max(at8, key=lambda r: r["fps"])
            result.add("streaming batch 8 fps / baseline fps", fastest["fps"] / base["fps"], "x", fastest["frames"],
                       "higher", note=f"{fastest['backend']}; batch 8 is the live pipeline's")  # fmt: skip
    for name, parity in report["parity"].items():
        result.add(f"max abs difference, {name} vs torch fp32", parity["max_abs"], "abs error on [0, 1]", 1,
                   note="backend agreement on the same inputs, not quality")  # fmt: skip
    lipgan_generator(ctx, result, backends, batches)


def lipgan_generator(ctx: BenchContext, result: SuiteResult, backends: list[str], batches: tuple[int, ...]) -> None:
    """LipGAN beside Wav2Lip on the backends that run both (torch ones), random weights in the released layout."""
    from benchmarks.bench_lipsync import random_lipgan_h5, run_benchmark
    from rt_f2f.lipsync.backends import LIPGAN_BACKENDS

    names = [b for b in backends if b in LIPGAN_BACKENDS] or ["torch"]
    with tempfile.TemporaryDirectory(prefix="rt-f2f-bench-lipgan-") as tmp:
        report = run_benchmark(
            random_lipgan_h5(Path(tmp)),
            names,
            batches,
            seconds=0.3 if ctx.quick else 5.0,
            baseline=False,
            progress=lambda m: ctx.progress(f"  lipgan {m}"),
        )
    result.settings["lipgan"] = {"backends": names, "batches": list(batches)}
    for row in report["results"]:
        name, batch = row["backend"], row["batch"]
        result.add(f"generator fps, {name} batch {batch}", row["fps"], "frames/s", row["frames"], "higher")
        result.add(f"generator CPU per frame, {name} batch {batch}", row["cpu_ms_per_frame"], "ms", row["frames"])
        curve = result.series.setdefault(f"fps:{name}", {"batch": [], "fps": []})
        curve["batch"].append(batch)
        curve["fps"].append(row["fps"])


def file_command(ctx: BenchContext, result: SuiteResult) -> None:
    from benchmarks.bench_lipsync_file import measure
    from rt_f2f.lipsync.backends import default_backend

    seconds, size = (QUICK_FILE_SECONDS, 256) if ctx.quick else (FULL_FILE_SECONDS, 384)
    backend = default_backend()
    ctx.progress(f"  lipsync file command: {seconds:g} s clip at {size} px, {backend}")
    m = measure(seconds=seconds, size=size, batch_size=128, backend_name=backend)
    base, ours = m["baseline"], m["rt_f2f"]
    result.settings["file_command"] = m["settings"]
    result.add("file command fps, original loop (baseline)", m["baseline_fps"], "frames/s", base["frames"], "higher")
    result.add("file command fps, rt-f2f lipsync", m["rt_f2f_fps"], "frames/s", ours["frames"], "higher")
    result.add("file command fps ratio, rt-f2f / original", m["fps_ratio"], "x", ours["frames"], "higher")
    result.add("file command pipeline ms/frame (no generator), original", base["pipeline_ms_per_frame"], "ms",
               base["frames"])  # fmt: skip
    result.add("file command pipeline ms/frame (no generator), rt-f2f", ours["pipeline_ms_per_frame"], "ms",
               ours["frames"])  # fmt: skip
    result.add("file command pipeline ratio, original / rt-f2f", m["pipeline_ratio"], "x", ours["frames"], "higher",
               note="everything but the generator: decode, face detection, mel, paste, encode")  # fmt: skip
    result.add("face detector runs, original / rt-f2f", base["detector_runs"] / max(1, ours["detector_runs"]), "x",
               ours["frames"], "higher")  # fmt: skip
    result.add("S3FD detection cost per run", m["s3fd_ms_per_frame"], "ms", 1,
               note="what the original's detector adds per run at this size (random weights)")  # fmt: skip


def run(ctx: BenchContext) -> SuiteResult:
    from rt_f2f.lipsync.backends import available_backends

    if not available_backends():
        return skipped("lipsync", "no lip-sync backend can run here: install torch or onnxruntime")
    result = SuiteResult("lipsync", settings={"weights": "random, released format (speed only)"})
    generator(ctx, result, shared_checkpoint())
    try:
        import pytest  # the tests' media helpers skip through pytest where their sources are not installed
    except ImportError:
        result.settings["file_command"] = "not measured: the clip is built with the tests' helpers, which need pytest"
        return result
    try:
        file_command(ctx, result)
    except pytest.skip.Exception as exc:  # no face photo to build the clip from: the generator figures still stand
        result.settings["file_command"] = f"not measured: {exc}"
    return result


SUITE = Suite("lipsync", "Wav2Lip throughput per backend and batch, and the file command, vs the original loop", run)
