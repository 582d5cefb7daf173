"""Lip-sync generator throughput per backend and batch size, against the original inference loop in the same run.

Wav2Lip by default; ``--model lipgan`` times LipGAN (a Keras ``.h5``; torch backends, no original-loop baseline).

The baseline reproduces what the original ``inference.py`` does around each model call: uint8 NHWC crops are
masked, concatenated, scaled by 1/255, transposed to NCHW, run through the fp32 torch model at batch 128 (its
default), and turned back into NHWC 0-255 images. Each backend is timed on the same inputs for a fixed wall time
per batch size; CPU time per frame is reported too, because on a shared machine it is steadier than wall time.

Weights are random unless ``--checkpoint`` is given: throughput does not depend on the weight values, and the
parity figures compare backends with each other, never lip-sync quality.

    python -m benchmarks.bench_lipsync --out lipsync.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import rt_f2f.lipsync  # noqa: F401  (sets OMP_WAIT_POLICY=PASSIVE before torch loads; see its docstring)

BATCH_SIZES = (1, 4, 8, 16, 32)
BASELINE_BATCH = 128  # the original inference.py's wav2lip_batch_size
PARITY_BATCH = 4


def _inputs(batch: int, seed: int = 0, mel_window: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mel = rng.uniform(-4, 4, (batch, 1, 80, mel_window)).astype(np.float32)
    faces = rng.uniform(0, 1, (batch, 6, 96, 96)).astype(np.float32)
    faces[:, :3, 48:] = 0
    return mel, faces


def _time(call: Callable[[], Any], frames_per_call: int, seconds: float, min_calls: int) -> dict[str, float]:
    """Wall fps, latency per call and process CPU ms per frame over at least ``min_calls`` calls."""
    call()  # warm-up: allocations, kernel selection, lazy init
    walls: list[float] = []
    cpu0, start = time.process_time(), time.perf_counter()
    while len(walls) < min_calls or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        call()
        walls.append(time.perf_counter() - t)
    cpu = time.process_time() - cpu0
    frames = frames_per_call * len(walls)
    return {
        "fps": frames / sum(walls),
        "ms_per_call_p50": 1000 * float(np.median(walls)),
        "cpu_ms_per_frame": 1000 * cpu / frames,
        "calls": len(walls),
        "frames": frames,
    }


def baseline_call(model: Any, batch: int) -> Callable[[], np.ndarray]:
    """The original inference loop's per-batch work around the model call (fp32 torch, NHWC uint8 in and out)."""
    import torch

    rng = np.random.default_rng(1)
    img_batch = rng.integers(0, 256, (batch, 96, 96, 3), dtype=np.uint8)
    mel_batch = rng.uniform(-4, 4, (batch, 80, 16)).astype(np.float32)

    def call() -> np.ndarray:
        img_masked = img_batch.copy()
        img_masked[:, 96 // 2 :] = 0
        img = np.concatenate((img_masked, img_batch), axis=3) / 255.0
        mel = np.reshape(mel_batch, [len(mel_batch), mel_batch.shape[1], mel_batch.shape[2], 1])
        img_t = torch.FloatTensor(np.transpose(img, (0, 3, 1, 2)))
        mel_t = torch.FloatTensor(np.transpose(mel, (0, 3, 1, 2)))
        with torch.no_grad():
            pred = model(mel_t, img_t)
        return pred.cpu().numpy().transpose(0, 2, 3, 1) * 255.0

    return call


def run_benchmark(
    checkpoint: Path,
    backends: Sequence[str],
    batch_sizes: Sequence[int] = BATCH_SIZES,
    seconds: float = 5.0,
    threads: int | None = None,
    baseline: bool = True,
    cache_dir: Path | None = None,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    import torch

    from benchmarks.common import machine_info, versions
    from rt_f2f.lipsync.backends import LIPGAN_BACKENDS, load_backend, model_of
    from rt_f2f.lipsync.checkpoint import load_wav2lip

    threads = threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    report: dict[str, Any] = {
        "machine": machine_info(),
        "versions": versions(["torch", "onnxruntime", "onnx", "numpy", "tensorrt"]),
        "settings": {
            "threads": threads,
            "seconds_per_point": seconds,
            "checkpoint": str(checkpoint),
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", ""),
        },
        "load_average_start": os.getloadavg(),
        "results": [],
        "parity": {},
    }
    lipgan = model_of(checkpoint) == "lipgan"
    if lipgan:  # LipGAN: torch backends only, and the original loop (Keras) is not re-created here
        backends, baseline = [b for b in backends if b in LIPGAN_BACKENDS], False
    window = 27 if lipgan else 16
    mel_p, faces_p = _inputs(PARITY_BATCH, seed=42, mel_window=window)
    reference = load_backend("torch", checkpoint, device="cpu").infer(mel_p, faces_p)

    if baseline:
        progress(f"baseline: original loop, torch fp32, batch {BASELINE_BATCH}")
        model = load_wav2lip(checkpoint, "cpu")
        stats = _time(baseline_call(model, BASELINE_BATCH), BASELINE_BATCH, seconds=0.0, min_calls=2)
        report["baseline"] = {"backend": "original loop (torch fp32)", "batch": BASELINE_BATCH, **stats}
        del model

    for name in backends:
        opts: dict[str, Any] = {"max_batch": max(batch_sizes)}
        if name == "onnxruntime":
            opts.update(threads=threads, cache_dir=cache_dir)
        elif name == "tensorrt":
            opts = {"cache_dir": cache_dir, "max_batch": max(batch_sizes), "opt_batch": 8}
        backend = load_backend(name, checkpoint, **opts)
        out = backend.infer(mel_p, faces_p)
        err = np.abs(out - reference)
        report["parity"][backend.name] = {"max_abs": float(err.max()), "mean_abs": float(err.mean())}
        for batch in batch_sizes:
            mel, faces = _inputs(batch, mel_window=window)
            stats = _time(lambda b=backend, m=mel, f=faces: b.infer(m, f), batch, seconds, min_calls=3)
            row = {"backend": backend.name, "batch": batch, **stats}
            if "baseline" in report:
                row["speedup_vs_baseline"] = stats["fps"] / report["baseline"]["fps"]
            report["results"].append(row)
            progress(f"{backend.name:>12} batch {batch:>3}: {stats['fps']:6.1f} fps")
        backend.close()
    report["load_average_end"] = os.getloadavg()
    return report


def format_table(report: dict[str, Any]) -> str:
    lines = [
        f"{'backend':<28} {'batch':>5} {'fps':>7} {'ms/call':>9} {'CPU ms/frame':>13} {'x baseline':>10} {'max err':>9}",
    ]
    base = report.get("baseline")
    if base:
        lines.append(
            f"{base['backend']:<28} {base['batch']:>5} {base['fps']:>7.1f} {base['ms_per_call_p50']:>9.0f} "
            f"{base['cpu_ms_per_frame']:>13.1f} {1.0:>10.2f} {0.0:>9.1e}"
        )
    for row in report["results"]:
        parity = report["parity"].get(row["backend"], {})
        lines.append(
            f"{row['backend']:<28} {row['batch']:>5} {row['fps']:>7.1f} {row['ms_per_call_p50']:>9.1f} "
            f"{row['cpu_ms_per_frame']:>13.1f} {row.get('speedup_vs_baseline', float('nan')):>10.2f} "
            f"{parity.get('max_abs', float('nan')):>9.1e}"
        )
    start, end = report["load_average_start"][0], report["load_average_end"][0]
    lines.append(
        f"threads {report['settings']['threads']}, load average {start:.1f} -> {end:.1f} on "
        f"{report['machine'].get('cpu_count')} CPUs; max err = max |backend - torch fp32| on a [0, 1] output"
    )
    return "\n".join(lines)


def _random_checkpoint(folder: Path) -> Path:
    from rt_f2f.lipsync.checkpoint import save_checkpoint
    from rt_f2f.lipsync.models import Wav2Lip, random_weights_

    return save_checkpoint(random_weights_(Wav2Lip(), seed=0), folder / "wav2lip-random.pth")


def random_lipgan_h5(folder: Path) -> Path:
    """The LipGAN generator with random weights, in the released Keras layout (speed only)."""
    from rt_f2f.lipsync.lipgan import LipGAN, random_weights_
    from rt_f2f.lipsync.lipgan_h5 import write_keras_h5

    return write_keras_h5(random_weights_(LipGAN(), seed=0), folder / "lipgan-random.h5")


def main(argv: Sequence[str] | None = None) -> int:
    from rt_f2f.lipsync.backends import available_backends

    parser = argparse.ArgumentParser(prog="bench_lipsync", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="wav2lip .pth (default: random weights of the same shape)")
    parser.add_argument("--model", choices=("wav2lip", "lipgan"), default="wav2lip", help="generator when random")
    parser.add_argument("--backends", default=",".join(available_backends()), help="comma-separated backend names")
    parser.add_argument("--batch-sizes", default=",".join(map(str, BATCH_SIZES)))
    parser.add_argument("--seconds", type=float, default=5.0, help="wall time per (backend, batch) point")
    parser.add_argument("--threads", type=int, help="compute threads (default: the CPUs this process may use)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the original-loop batch-128 baseline")
    parser.add_argument("--cache-dir", type=Path, help="engine cache (default: the user cache for --checkpoint)")
    parser.add_argument("--out", type=Path, help="write the report as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-lipsync-") as scratch:
        random = random_lipgan_h5 if args.model == "lipgan" else _random_checkpoint
        checkpoint = args.checkpoint or random(Path(scratch))
        report = run_benchmark(
            checkpoint,
            [b for b in args.backends.split(",") if b],
            [int(b) for b in args.batch_sizes.split(",")],
            seconds=args.seconds,
            threads=args.threads,
            baseline=not args.no_baseline,
            # random weights are new each run; a real checkpoint reuses the engine cache (TensorRT builds are slow)
            cache_dir=args.cache_dir or (None if args.checkpoint else Path(scratch) / "engines"),
        )
    print(format_table(report))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
