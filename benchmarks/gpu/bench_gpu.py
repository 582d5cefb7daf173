"""The GPU path, measured in one prepared run: the Wav2Lip generator, streams per GPU, and the speech chain.

``python -m benchmarks.gpu.bench_gpu --device cuda --out DIR`` (``benchmarks/gpu/run.sh`` wraps it for the lent
GPU machine) writes ``results.json`` and ``report.md`` in the schema of ``rt-f2f bench``, as three suites:

- ``gpu-generator``: generator frames/s per precision (fp32 / fp16 / bf16), memory layout (contiguous /
  channels_last) and batch (1-128), eager, replayed from CUDA graphs, and through ``torch.compile``; inputs already
  on the device, so these are the generator's own figures; plus the backend's numpy-in / numpy-out path (host
  copies included) and agreement of each precision with fp32.
- ``gpu-streams``: the largest number of concurrent 25-fps streams whose frames one shared generator renders with
  render lag p95 under 100 ms and at most 1 % skipped (``rt_f2f.lipsync.batcher``: batches formed across streams by
  deadline). Once with synthetic streams that hand the batcher ready inputs (what the GPU and the batcher hold),
  once with full ``LipSyncStream``s (crop, mel, paste on the host: what one Python process holds).
- ``gpu-speech``: the speech engine (VAD, faster-whisper on the device, MT, TTS, voice conversion) live on the bundled
  clip at real-time pace: ear-voice span, and how many concurrent speakers keep its p95 under 2 s. Reported as
  skipped, with the reason, where its packages or models are not on the machine.

Weights are random in the released format: speed only, nothing about lip-sync quality. ``--device cpu --quick`` runs
every part at toy sizes, so the script is tested end to end on machines without a GPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

import rt_f2f.lipsync  # noqa: F401 - first, before torch: it makes idle OpenMP threads sleep instead of spin
from benchmarks.common import SuiteResult, machine_info, skipped, versions

FPS = 25.0
LAG_LIMIT_S = 0.100  # render lag p95 a stream may have
SKIP_LIMIT = 0.01  # share of frames a stream count may skip and still count as held
BUDGET_S = 0.090  # each frame's deadline after it is handed to the shared generator
EVS_LIMIT_S = 2.0  # ear-voice span p95 a speaker count may have
SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "en_sample.wav"
FRAME_SIZE = 256  # host frames of the full-stream run; the face box is half of it
PACKAGES = ("torch", "numpy", "onnxruntime", "ctranslate2", "faster-whisper", "triton")


@dataclass
class Plan:
    """What to measure, sized for the device and ``--quick``; ``budget_s`` bounds the whole run."""

    device: str
    quick: bool
    budget_s: float
    precisions: tuple[str, ...]
    layouts: tuple[str, ...]
    batches: tuple[int, ...]
    min_seconds: float  # per timed point
    graphs: bool
    compile_batches: tuple[int, ...]
    stream_counts: tuple[int, ...]
    full_stream_counts: tuple[int, ...]
    stream_seconds: float
    speech_seconds: float | None  # None: the whole clip
    speakers: tuple[int, ...]
    started: float = field(default_factory=time.monotonic)

    def used(self) -> float:
        return time.monotonic() - self.started

    def within(self, share: float) -> bool:
        """Whether the run has used less than ``share`` of its budget (later parts keep the rest)."""
        return self.used() < share * self.budget_s

    @property
    def max_batch(self) -> int:
        return max(self.batches)


def make_plan(device: str, quick: bool, budget_s: float) -> Plan:
    if device == "cpu":
        return Plan(device, quick, budget_s, ("fp32",), ("contiguous",), (1, 2) if quick else (1, 4, 16), 0.0,
                    False, (), (1, 2) if quick else (1, 2, 4), (1,) if quick else (1, 2), 1.0 if quick else 3.0,
                    6.0 if quick else None, (1,) if quick else (1, 2))  # fmt: skip
    counts = (8, 16, 32, 64, 128, 256, 384, 512, 768, 1024, 1536, 2048)
    return Plan(device, quick, budget_s, ("fp32", "fp16", "bf16"), ("contiguous", "channels_last"),
                (1, 8, 32, 128) if quick else (1, 2, 4, 8, 16, 32, 64, 128), 0.2 if quick else 0.4, True,
                () if quick else (8, 64), counts[:6] if quick else counts, (4, 8, 16, 32) if quick else
                (4, 8, 16, 32, 48, 64, 96, 128), 2.0 if quick else 3.0, 6.0 if quick else None,
                (1, 2) if quick else (1, 2, 4, 8, 16))  # fmt: skip


# ------------------------------------------------------------------------------------------------- generator


def _torch():
    import torch

    return torch


def _dtype(precision: str):
    torch = _torch()
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def random_model(device: str, precision: str, layout: str):
    """The Wav2Lip generator with random weights in the released format (speed only)."""
    torch = _torch()
    from rt_f2f.lipsync.models import ARCHITECTURES, random_weights_

    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    model = random_weights_(ARCHITECTURES["wav2lip"](), 0).eval()
    return model.to(device=device, dtype=_dtype(precision), memory_format=fmt)


def device_inputs(batch: int, device: str, precision: str, layout: str, seed: int = 0):
    torch = _torch()
    g = torch.Generator().manual_seed(seed)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    mel = torch.randn((batch, 1, 80, 16), generator=g).to(device, _dtype(precision))
    faces = torch.rand((batch, 6, 96, 96), generator=g).to(device, _dtype(precision)).contiguous(memory_format=fmt)
    return mel, faces


def sync(device: str) -> None:
    if device.startswith("cuda"):
        _torch().cuda.synchronize()


def throughput(call: Callable[[], Any], batch: int, device: str, min_seconds: float, min_calls: int = 2) -> float:
    """Frames per second of back-to-back calls (after one warm-up call), synchronised at the end."""
    call()
    sync(device)
    start, calls = time.perf_counter(), 0
    while calls < min_calls or time.perf_counter() - start < min_seconds:
        call()
        calls += 1
        if device.startswith("cuda") and calls % 16 == 0:
            sync(device)  # keep the queue of launched work short
    sync(device)
    return batch * calls / (time.perf_counter() - start)


class GraphedGenerator:
    """The generator replayed from CUDA graphs captured per batch size (powers of two up to ``max_batch``); a
    batch is padded up to the next captured size. Looks like a ``LipSyncBackend`` (``infer`` on numpy arrays)."""

    def __init__(self, model: Any, device: str, precision: str, layout: str, max_batch: int) -> None:
        torch = _torch()
        self.device, self.dtype = torch.device(device), _dtype(precision)
        self.max_batch = max_batch
        self.name = f"torch-{precision}-{layout}-cudagraph"
        self.sizes = sorted({min(max_batch, 1 << k) for k in range(max_batch.bit_length() + 1)})
        self._graphs: dict[int, tuple[Any, Any, Any, Any]] = {}
        with torch.inference_mode():  # graphs, static inputs and outputs are inference tensors: use them in it
            for n in self.sizes:  # each in its own memory pool: memory is plenty, and any replay order is safe
                mel, faces = device_inputs(n, device, precision, layout)
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    for _ in range(2):
                        model(mel, faces)
                torch.cuda.current_stream().wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    out = model(mel, faces)
                self._graphs[n] = (graph, mel, faces, out)

    def replay(self, n: int) -> None:
        self._graphs[n][0].replay()

    def infer(self, mel: np.ndarray, faces: np.ndarray) -> np.ndarray:
        torch = _torch()
        with torch.inference_mode():
            return self._infer(torch, mel, faces)

    def _infer(self, torch: Any, mel: np.ndarray, faces: np.ndarray) -> np.ndarray:
        outs = []
        for i in range(0, len(mel), self.max_batch):
            m, f = mel[i : i + self.max_batch], faces[i : i + self.max_batch]
            n = next(s for s in self.sizes if s >= len(m))
            graph, smel, sfaces, sout = self._graphs[n]
            smel[: len(m)].copy_(torch.from_numpy(np.ascontiguousarray(m)), non_blocking=False)
            sfaces[: len(f)].copy_(torch.from_numpy(np.ascontiguousarray(f)), non_blocking=False)
            graph.replay()
            outs.append(sout[: len(m)].float().cpu().numpy())
        return np.concatenate(outs)


def generator_suite(plan: Plan, progress: Callable[[str], None]) -> tuple[SuiteResult, dict[str, Any]]:
    """Frames/s per variant and batch; returns the suite and the fastest variant at the largest batch."""
    torch = _torch()
    result = SuiteResult("gpu-generator", settings={"weights": "random, released format (speed only)"})
    device = plan.device
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True  # per-shape kernel choice: the sweep's shapes repeat
        result.settings["cudnn.benchmark"] = True
        result.settings["cudnn.allow_tf32 (fp32 convolutions)"] = torch.backends.cudnn.allow_tf32
    result.settings.update(batches=list(plan.batches), device=device, torch=torch.__version__)
    best: dict[str, Any] = {"fps": 0.0}
    per_precision_layout: dict[str, str] = {}
    for precision in plan.precisions:
        layout_fps: dict[str, float] = {}
        for layout in plan.layouts:
            if not plan.within(0.25):
                result.settings.setdefault("not measured (time budget)", []).append(f"eager {precision} {layout}")
                continue
            model = random_model(device, precision, layout)

            def eager(batch: int, model: Any = model, precision: str = precision, layout: str = layout) -> float:
                mel, faces = device_inputs(batch, device, precision, layout)
                with torch.inference_mode():
                    return throughput(lambda: model(mel, faces), batch, device, plan.min_seconds)

            curve, best = _sweep(result, plan, ("eager", precision, layout), eager, best, progress)
            layout_fps[layout] = curve["fps"][-1]
            del model
        if layout_fps:
            per_precision_layout[precision] = max(layout_fps, key=layout_fps.get)
    if plan.graphs and device.startswith("cuda"):
        for precision, layout in per_precision_layout.items():
            if precision == "fp32" or not plan.within(0.35):
                continue
            model = random_model(device, precision, layout)
            graphed = GraphedGenerator(model, device, precision, layout, plan.max_batch)

            def replay(batch: int, graphed: GraphedGenerator = graphed) -> float:
                n = next(s for s in graphed.sizes if s >= batch)  # the plan's batches are captured sizes
                return throughput(lambda: graphed.replay(n), batch, device, plan.min_seconds)

            _, best = _sweep(result, plan, ("cuda graph", precision, layout), replay, best, progress)
            del graphed, model
    else:
        result.settings["cuda graphs"] = "not measured: CUDA only"
    result.settings["layouts"] = per_precision_layout  # the faster layout per precision, at the largest batch
    _host_path(plan, result, best, progress)
    _onnxruntime(plan, result, progress)
    _parity(plan, result)
    result.settings["best"] = {k: v for k, v in best.items() if k != "fps"}
    return result, best


def _sweep(
    result: SuiteResult,
    plan: Plan,
    variant: tuple[str, str, str],
    fps_at: Callable[[int], float],
    best: dict[str, Any],
    progress: Callable[[str], None],
) -> tuple[dict[str, list], dict[str, Any]]:
    """Frames/s of one (kind, precision, layout) at every batch of the plan; returns its curve and the new best."""
    kind, precision, layout = variant
    name = " ".join(variant)
    curve: dict[str, list] = {"batch": [], "fps": []}
    for batch in plan.batches:
        fps = fps_at(batch)
        result.add(f"generator fps, {name}, batch {batch}", fps, "frames/s", batch, "higher")
        curve["batch"].append(batch)
        curve["fps"].append(fps)
        progress(f"  generator {name} batch {batch}: {fps:.0f} frames/s")
        if fps > best["fps"]:
            best = {"fps": fps, "precision": precision, "layout": layout, "batch": batch, "kind": kind}
    result.series[f"fps:{name}"] = curve
    return curve, best


def compile_points(plan: Plan, result: SuiteResult, progress: Callable[[str], None]) -> None:
    """``torch.compile`` at a few batches, added to the generator suite; run after the streams, being the slowest
    to start (inductor compiles per shape) and the least likely to be what a deployment would use."""
    layouts: dict[str, str] = result.settings.get("layouts", {})
    if not plan.compile_batches or not layouts:
        result.settings["torch.compile"] = "not measured in this plan (CPU or --quick)"
        return
    torch = _torch()
    precision = "fp16" if "fp16" in layouts else next(iter(layouts))
    layout = layouts[precision]
    for batch in plan.compile_batches:
        if not plan.within(0.75):  # compiles run last: one can take a minute or two
            result.settings.setdefault("not measured (time budget)", []).append(f"compile batch {batch}")
            continue
        try:
            model = torch.compile(random_model(plan.device, precision, layout), dynamic=False)
            mel, faces = device_inputs(batch, plan.device, precision, layout)
            start = time.perf_counter()
            with torch.inference_mode():
                model(mel, faces)
                sync(plan.device)
                compile_s = time.perf_counter() - start
                fps = throughput(lambda g=model, m=mel, f=faces: g(m, f), batch, plan.device, plan.min_seconds)
        except Exception as exc:  # inductor needs a compiler toolchain; report why, keep the other figures
            result.settings[f"torch.compile batch {batch}"] = f"failed: {type(exc).__name__}: {exc}"[:300]
            continue
        name = f"torch.compile {precision} {layout}"
        result.add(f"generator fps, {name}, batch {batch}", fps, "frames/s", batch, "higher")
        result.add(f"compile time, {name}, batch {batch}", compile_s, "s", 1)
        progress(f"  generator {name} batch {batch}: {fps:.0f} frames/s (compiled in {compile_s:.0f} s)")


def make_backend(plan: Plan, best: dict[str, Any]) -> Any:
    """The fastest variant as a backend with numpy in and out: CUDA graphs where they won, else ``TorchBackend``."""
    from benchmarks.suite_lipsync import shared_checkpoint
    from rt_f2f.lipsync.backends import TorchBackend

    precision, layout = best.get("precision", "fp32"), best.get("layout", "contiguous")
    if best.get("kind") == "cuda graph":
        model = random_model(plan.device, precision, layout)
        return GraphedGenerator(model, plan.device, precision, layout, plan.max_batch)
    return TorchBackend(shared_checkpoint(), device=plan.device, precision=precision,
                        channels_last=layout == "channels_last", max_batch=plan.max_batch)  # fmt: skip


def _host_path(plan: Plan, result: SuiteResult, best: dict[str, Any], progress: Callable[[str], None]) -> None:
    """The backend as the streams call it: numpy in, numpy out (host-device copies and input checks included)."""
    backend = make_backend(plan, best)
    rng = np.random.default_rng(0)
    for batch in sorted({plan.batches[0], plan.max_batch}) if plan.device.startswith("cuda") else plan.batches[:1]:
        mel = rng.standard_normal((batch, 1, 80, 16)).astype(np.float32)
        faces = rng.random((batch, 6, 96, 96), dtype=np.float32)
        fps = throughput(lambda m=mel, f=faces: backend.infer(m, f), batch, plan.device, plan.min_seconds)
        result.add(f"backend fps with host copies, {backend.name}, batch {batch}", fps, "frames/s", batch, "higher",
                   note="numpy in and out, as LipSyncStream calls it")  # fmt: skip
        progress(f"  backend {backend.name} batch {batch} (host copies): {fps:.0f} frames/s")


def _onnxruntime(plan: Plan, result: SuiteResult, progress: Callable[[str], None]) -> None:
    """ONNX Runtime's CUDA provider, where its package offers one (the GPU wheel is far over a carry's 64 MiB)."""
    if not plan.device.startswith("cuda"):
        return
    try:
        import onnxruntime as ort
    except ImportError:
        result.settings["onnxruntime"] = "not measured: onnxruntime is not installed"
        return
    providers = ort.get_available_providers()
    if "CUDAExecutionProvider" not in providers:
        result.settings["onnxruntime"] = (
            f"not measured: no CUDA provider in onnxruntime {ort.__version__} ({providers})"
        )
        return
    import tempfile

    from benchmarks.suite_lipsync import shared_checkpoint
    from rt_f2f.lipsync.backends import OnnxRuntimeBackend

    try:
        with tempfile.TemporaryDirectory(prefix="rt-f2f-gpu-onnx-") as tmp:
            backend = OnnxRuntimeBackend(shared_checkpoint(), cache_dir=tmp, providers=["CUDAExecutionProvider"],
                                         max_batch=plan.max_batch)  # fmt: skip
            rng = np.random.default_rng(0)
            for batch in (8, plan.max_batch):
                mel = rng.standard_normal((batch, 1, 80, 16)).astype(np.float32)
                faces = rng.random((batch, 6, 96, 96), dtype=np.float32)
                fps = throughput(lambda m=mel, f=faces: backend.infer(m, f), batch, plan.device, plan.min_seconds)
                result.add(f"backend fps with host copies, onnxruntime CUDA fp32, batch {batch}", fps, "frames/s",
                           batch, "higher")  # fmt: skip
                progress(f"  onnxruntime CUDA batch {batch}: {fps:.0f} frames/s")
    except Exception as exc:  # export or session creation: say why, keep the torch figures
        result.settings["onnxruntime"] = f"failed: {type(exc).__name__}: {exc}"[:300]


def _parity(plan: Plan, result: SuiteResult) -> None:
    torch = _torch()
    if len(plan.precisions) < 2:
        return
    with torch.inference_mode():
        ref_mel, ref_faces = device_inputs(4, plan.device, "fp32", "contiguous", seed=1)
        ref = random_model(plan.device, "fp32", "contiguous")(ref_mel, ref_faces).float()
        for precision in plan.precisions:
            if precision == "fp32":
                continue
            model = random_model(plan.device, precision, "contiguous")
            out = model(ref_mel.to(_dtype(precision)), ref_faces.to(_dtype(precision))).float()
            result.add(f"max abs difference, {precision} vs fp32", float((out - ref).abs().max()), "abs on [0, 1]",
                       4, note="agreement with random weights, not quality")  # fmt: skip


# --------------------------------------------------------------------------------------------------- streams


@dataclass
class StreamRun:
    streams: int
    frames: int
    rendered: int
    skipped: int
    lags: list[float]
    mean_batch: float
    feeder_behind_p95: float  # how late the driver handed frames over (host-bound when large)
    skip_spread: float = 0.0  # largest minus smallest share of frames skipped per stream (fairness under overload)

    @property
    def skip_share(self) -> float:
        return self.skipped / self.frames if self.frames else 1.0

    @property
    def lag_p95(self) -> float:
        return float(np.percentile(self.lags, 95)) if self.lags else math.inf

    @property
    def held(self) -> bool:
        return self.frames > 0 and self.lag_p95 < LAG_LIMIT_S and self.skip_share <= SKIP_LIMIT


def synthetic_streams(backend: Any, n: int, seconds: float, max_batch: int, cost: Any) -> StreamRun:
    """``n`` streams hand the shared generator one ready frame each every 40 ms (staggered), for ``seconds``.

    A frame's deadline and render lag count from when it was due, so a driver that falls behind (the host, not the
    GPU, is then the limit) shows as lag, and ``feeder_behind_p95`` says so."""
    from rt_f2f.lipsync.shared_generator import SharedGenerator

    rng = np.random.default_rng(n)
    mels = rng.standard_normal((min(n, 64), 1, 1, 80, 16)).astype(np.float32)
    faces = rng.random((min(n, 64), 1, 6, 96, 96), dtype=np.float32)
    tickets, behind = [], []
    schedule = sorted((k / FPS + s / (FPS * n), s) for s in range(n) for k in range(int(seconds * FPS)))
    with SharedGenerator(backend, max_batch=max_batch, calibrate=False, cost=cost) as shared:
        t0 = time.monotonic() + 0.05
        i = 0
        while i < len(schedule):
            now = time.monotonic()
            if t0 + schedule[i][0] > now:
                time.sleep(t0 + schedule[i][0] - now)
                continue
            while i < len(schedule) and t0 + schedule[i][0] <= now:
                due, s = schedule[i]
                behind.append(max(0.0, now - (t0 + due)))
                ticket = shared.submit(s, mels[s % len(mels)], faces[s % len(faces)], t0 + due + BUDGET_S)
                tickets.append((t0 + due, ticket))
                i += 1
        give_up = time.monotonic() + 10.0  # a wedged generator ends the step, its frames counted as skipped
        for _, t in tickets:
            t.wait(timeout=max(0.0, give_up - time.monotonic()))
    stats = shared.stats
    lags = [t.finished - due for due, t in tickets if t.ready and t.rendered.all()]
    shares = [c.skipped_late / c.submitted for c in stats.streams.values() if c.submitted]
    return StreamRun(n, stats.submitted, stats.rendered, stats.skipped_late + stats.failed, lags, stats.mean_batch,
                     float(np.percentile(behind, 95)) if behind else 0.0,
                     max(shares) - min(shares) if shares else 0.0)  # fmt: skip


class _FixedTracker:
    def __init__(self, box: Any) -> None:
        self.box = box

    def update(self, image: np.ndarray, t: float | None = None) -> Any:
        return self.box


def full_streams(
    backend: Any, n: int, seconds: float, max_batch: int, cost: Any, workers: int, give_up_s: float = 5.0
) -> StreamRun:
    """``n`` full ``LipSyncStream``s at 25 fps on ``workers`` host threads sharing one generator: each frame is
    cropped, its mel window computed, rendered in a shared batch, pasted back. Lag: push to the frame coming out."""
    from rt_f2f.frames import VideoFrame
    from rt_f2f.lipsync.faces import FaceBox
    from rt_f2f.lipsync.shared_generator import SharedGenerator
    from rt_f2f.lipsync.stream import LOOKAHEAD_S, LipSyncStream

    half = FRAME_SIZE // 2
    box = FaceBox(half / 2, half / 2, half * 1.5, half * 1.5)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
    audio = (0.1 * rng.standard_normal(int((seconds + 1) * 16000))).astype(np.float32)
    frames_per_stream = int(seconds * FPS)
    lags: list[float] = []
    behind: list[float] = []
    lock = threading.Lock()
    with SharedGenerator(backend, max_batch=max_batch, calibrate=False, cost=cost) as shared:
        streams = []
        for s in range(n):
            stream = LipSyncStream(shared.client(BUDGET_S, stream=s), fps=FPS, batch_size=1,
                                   max_latency_s=LOOKAHEAD_S, tracker=_FixedTracker(box))  # fmt: skip
            stream.push_audio(audio, 0.0)  # translated speech is ahead of the frames it plays with
            streams.append(stream)
        t0 = time.monotonic() + 0.1

        def work(owned: list[int]) -> None:
            pushed: dict[tuple[int, int], float] = {}
            mine_lags, mine_behind = [], []
            schedule = sorted((k / FPS + s / (FPS * n), s, k) for s in owned for k in range(frames_per_stream))
            i = 0
            while i < len(schedule) or any(streams[s].pending for s in owned):
                now = time.monotonic()
                while i < len(schedule) and t0 + schedule[i][0] <= now:
                    due, s, k = schedule[i]
                    mine_behind.append(now - (t0 + due))
                    pushed[(s, k)] = t0 + due  # lag counts from when the frame was due
                    out = streams[s].push_video(VideoFrame(image=image, pts=k / FPS, index=k))
                    mine_lags += [time.monotonic() - pushed.pop((s, f.index)) for f in out]
                    i += 1
                for s in owned:
                    if streams[s].pending:
                        mine_lags += [time.monotonic() - pushed.pop((s, f.index)) for f in streams[s].poll()]
                if time.monotonic() - t0 > seconds + give_up_s:
                    break  # a host this far behind has failed the step: frames not out by now count as skipped
                nxt = t0 + schedule[i][0] if i < len(schedule) else now + 0.002
                time.sleep(max(0.0, min(nxt - time.monotonic(), 0.002)))
            with lock:
                lags.extend(mine_lags)
                behind.extend(mine_behind)

        threads = [threading.Thread(target=work, args=(list(range(w, n, workers)),)) for w in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = shared.stats
    rendered_frames = sum(st.stats.frames_out - st.stats.frames_skipped_late for st in streams)
    total = n * frames_per_stream
    return StreamRun(n, total, rendered_frames, total - rendered_frames, lags, stats.mean_batch,
                     float(np.percentile(behind, 95)) if behind else 0.0)  # fmt: skip


def _ramp(result: SuiteResult, label: str, counts: tuple[int, ...], run: Callable[[int], StreamRun],
          plan: Plan, share: float, progress: Callable[[str], None]) -> int:  # fmt: skip
    """Raise the stream count until a step fails; returns the largest count held (0: none)."""
    held = 0
    curve: dict[str, list] = {"batch": [], "fps": []}
    for n in counts:
        if not plan.within(share):
            result.settings.setdefault("not measured (time budget)", []).append(f"{label} {n} streams")
            break
        r = run(n)
        progress(f"  {label}: {n} streams, lag p95 {1000 * r.lag_p95:.0f} ms, skipped {100 * r.skip_share:.1f} %, "
                 f"mean batch {r.mean_batch:.1f}, driver behind p95 {1000 * r.feeder_behind_p95:.0f} ms")  # fmt: skip
        if r.lags:
            result.add(f"{label}, {n} streams: render lag p95", r.lag_p95, "s", len(r.lags))
        result.add(f"{label}, {n} streams: skipped", 100 * r.skip_share, "% of frames", max(1, r.frames))
        result.add(f"{label}, {n} streams: mean batch", r.mean_batch, "frames", max(1, r.rendered), "none")
        result.add(f"{label}, {n} streams: driver behind schedule p95", r.feeder_behind_p95, "s", max(1, r.frames),
                   note="how late the host handed frames over: large means the host, not the GPU, is the limit")  # fmt: skip
        if r.skipped:
            result.add(f"{label}, {n} streams: skipped share spread between streams", 100 * r.skip_spread,
                       "percentage points", n, note="fairness: how unevenly the skips fell")  # fmt: skip
        curve["batch"].append(n)
        curve["fps"].append(r.rendered / plan.stream_seconds)
        if r.lags:
            result.series[f"cdf:{label} {n} streams render lag"] = r.lags[:5000]
        if not r.held:
            break
        held = n
    result.series[f"streams:{label}"] = {"streams": curve["batch"], "rendered frames/s": curve["fps"]}
    return held


def batcher_host_cost(max_batch: int, frames: int = 4096) -> float:
    """Seconds of host time the batching policy spends per frame (submit, plan, stack the batch, settle), measured
    on its own with a generator that costs nothing: the ceiling it puts on frames/s per host thread."""
    from rt_f2f.lipsync.batcher import BatchCore
    from rt_f2f.lipsync.costmodel import CostModel

    rng = np.random.default_rng(0)
    mel = rng.standard_normal((1, 1, 80, 16)).astype(np.float32)
    faces = rng.random((1, 6, 96, 96), dtype=np.float32)
    out = np.zeros((max_batch, 3, 96, 96), np.float32)
    clock = [0.0]
    core = BatchCore(max_batch, CostModel(fixed=0.001, per_frame=1e-5), lambda: clock[0])
    start = time.perf_counter()
    for i in range(frames):
        core.submit(i % 256, mel, faces, clock[0] + 0.09)
        clock[0] += 1e-5
        batch = core.take()
        if batch is not None:
            core.finish(batch, out[: len(batch)])
    return (time.perf_counter() - start) / frames


class SleepGenerator:
    """A stand-in generator that only waits ``fixed_s + per_frame_s * n`` per batch (no model, no device): with it the
    streams part measures what the host side (drivers, streams, batcher) sustains for a generator of that cost."""

    max_batch = 128

    def __init__(self, fixed_s: float, per_frame_s: float) -> None:
        self.fixed_s, self.per_frame_s = fixed_s, per_frame_s
        self.name = f"simulated generator ({1000 * fixed_s:g} ms + {1000 * per_frame_s:g} ms per frame)"
        self._out = np.zeros((self.max_batch, 3, 96, 96), np.float32)

    def infer(self, mel: np.ndarray, faces: np.ndarray) -> np.ndarray:
        time.sleep(self.fixed_s + self.per_frame_s * len(mel))
        return self._out[: len(mel)]


def streams_suite(
    plan: Plan, best: dict[str, Any], progress: Callable[[str], None], simulated: SleepGenerator | None = None
) -> SuiteResult:
    from rt_f2f.lipsync.stream import LOOKAHEAD_S

    result = SuiteResult("gpu-streams", settings={
        "fps": FPS, "lag limit s": LAG_LIMIT_S, "skip limit": SKIP_LIMIT, "deadline after hand-over s": BUDGET_S,
        "seconds per step": plan.stream_seconds, "max batch": plan.max_batch, "generator": dict(best),
        "lookahead s (audio ahead)": LOOKAHEAD_S, "frame size": FRAME_SIZE})  # fmt: skip
    from rt_f2f.lipsync.shared_generator import SharedGenerator

    backend = simulated or make_backend(plan, best)
    result.settings["backend"] = backend.name
    if simulated is not None:
        result.settings["generator"] = "simulated: no model runs, so these figures are the host side's capacity only"
    seconds, mb = plan.stream_seconds, plan.max_batch
    with SharedGenerator(backend, max_batch=mb) as calibration:  # once: every step goes on learning this model
        cost = calibration.core.cost
    for n in cost.observed:
        result.add(f"batch cost as the batcher learned it, batch {n}", cost.estimate(n), "s", 1)
    host = batcher_host_cost(mb)
    result.add("batcher host time per frame", 1e6 * host, "us", 4096,
               note="submit + plan + stack + settle, with a free generator: 1 / this is its frames/s ceiling")  # fmt: skip
    held = _ramp(result, "synthetic streams", plan.stream_counts,
                 lambda n: synthetic_streams(backend, n, seconds, mb, cost), plan, 0.60, progress)  # fmt: skip
    result.add("concurrent 25-fps streams held, shared generator (synthetic streams)", held, "streams", 1, "higher",
               note=f"render lag p95 < {1000 * LAG_LIMIT_S:.0f} ms and <= {100 * SKIP_LIMIT:.0f} % skipped")  # fmt: skip
    workers = max(1, min(8, (os.cpu_count() or 2) // 2))
    result.settings["host threads (full streams)"] = workers
    held_full = _ramp(result, "full LipSyncStreams", plan.full_stream_counts,
                      lambda n: full_streams(backend, n, seconds, mb, cost, workers), plan, 0.72, progress)  # fmt: skip
    result.add("concurrent 25-fps streams held, full LipSyncStreams in one process", held_full, "streams", 1,
               "higher", note="crop + mel + paste on the host threads, generator shared")  # fmt: skip
    return result


# ---------------------------------------------------------------------------------------------------- speech


def speech_missing(device: str) -> list[str]:
    """What keeps the speech chain from running on this device (empty: nothing)."""
    import importlib.util

    missing = [f"python package {m}" for m in ("faster_whisper", "ctranslate2") if importlib.util.find_spec(m) is None]
    if not missing and device.startswith("cuda"):
        import ctranslate2

        if ctranslate2.get_cuda_device_count() < 1:
            missing.append("ctranslate2 sees no CUDA device (its PyPI wheel is built for CUDA 12: libcublas.so.12)")
    if not SAMPLE.exists():
        missing.append(f"{SAMPLE}")
    if not missing:
        from rt_f2f.asr.whisper import resolve_whisper
        from rt_f2f.errors import RtF2fError

        try:
            resolve_whisper("whisper-base")
        except RtF2fError as exc:
            missing.append(f"the whisper-base model ({exc.message})")
    return missing


def speech_suite(plan: Plan, progress: Callable[[str], None]) -> SuiteResult:
    missing = speech_missing(plan.device)
    if missing:
        return skipped("gpu-speech", "not on this machine: " + "; ".join(missing))
    from rt_f2f.asr.whisper import load_whisper
    from rt_f2f.audio import read_audio
    from rt_f2f.errors import RtF2fError
    from rt_f2f.rates import ENGINE_RATE
    from rt_f2f.recording import translate_recording
    from rt_f2f.speech import SpeechConfig, SpeechEngine, load_models

    config = SpeechConfig(source="en", target="pt")
    try:
        models = load_models(config)
    except RtF2fError as exc:
        return skipped("gpu-speech", f"{exc.message} ({exc.hint})")
    compute_type = "float16" if plan.device.startswith("cuda") else "int8"
    models.recogniser = load_whisper(config.asr_model, device=plan.device, compute_type=compute_type)
    samples = read_audio(SAMPLE, ENGINE_RATE)
    if plan.speech_seconds:
        samples = samples[: int(plan.speech_seconds * ENGINE_RATE)]
    result = SuiteResult("gpu-speech", settings={
        "input": SAMPLE.name, "seconds": samples.size / ENGINE_RATE, "pair": "en->pt", "asr": config.asr_model,
        "asr device": f"{plan.device} {compute_type}", "tts": models.synthesizer.describe(),
        "mt, tts, voice conversion": "on the host CPU (their runtimes here have no GPU path)",
        "evs limit s": EVS_LIMIT_S})  # fmt: skip

    async def speakers(k: int) -> list[Any]:
        return await asyncio.gather(*(translate_recording(SpeechEngine(config, models), samples, realtime=True)
                                      for _ in range(k)))  # fmt: skip

    held = 0
    for k in plan.speakers:
        if k > 1 and not plan.within(0.97):
            result.settings.setdefault("not measured (time budget)", []).append(f"{k} speakers")
            break
        runs = asyncio.run(speakers(k))
        spans = [c.ear_voice_span for r in runs for c in r.clauses if c.ear_voice_span is not None]
        progress(f"  speech: {k} speakers, {len(spans)} clauses, EVS p95 "
                 f"{np.percentile(spans, 95) if spans else float('nan'):.2f} s")  # fmt: skip
        if not spans:
            result.settings[f"{k} speakers"] = "no clause was translated"
            break
        if k == 1:
            result.add_stats("ear-voice span, 1 speaker", spans, "s")
            result.series["cdf:speech ear-voice span, 1 speaker"] = spans
        else:
            result.add(f"ear-voice span p95, {k} speakers", float(np.percentile(spans, 95)), "s", len(spans))
        if float(np.percentile(spans, 95)) >= EVS_LIMIT_S:
            break
        held = k
    result.add(f"concurrent speakers with ear-voice span p95 < {EVS_LIMIT_S:g} s", held, "speakers", 1, "higher")
    return result


# ------------------------------------------------------------------------------------------------------ main


def _run_part(name: str, fn: Callable[[], SuiteResult], progress: Callable[[str], None]) -> SuiteResult:
    import traceback

    progress(f"[gpu bench] {name} ...")
    start = time.perf_counter()
    try:
        result = fn()
    except Exception as exc:  # one broken part must not hide the others' figures
        progress(traceback.format_exc())
        result = SuiteResult(name, status="failed", reason=f"{type(exc).__name__}: {exc}")
    result.seconds = time.perf_counter() - start
    progress(f"[gpu bench] {name}: {result.status} in {result.seconds:.1f} s")
    return result


def run(
    device: str,
    quick: bool,
    budget_s: float,
    parts: list[str],
    progress: Callable[[str], None],
    simulated: SleepGenerator | None = None,
) -> dict:
    plan = make_plan(device, quick, budget_s)
    if simulated is not None:  # the GPU plan's stream counts and batch, against the stand-in generator
        gpu = make_plan("cuda", quick, budget_s)
        plan = replace(plan, batches=(1, SleepGenerator.max_batch), stream_counts=gpu.stream_counts,
                       full_stream_counts=gpu.full_stream_counts, stream_seconds=gpu.stream_seconds)  # fmt: skip
    results: list[SuiteResult] = []
    best: dict[str, Any] = {"precision": "fp32", "layout": "contiguous", "kind": "eager"}
    if "generator" in parts:
        holder: dict[str, Any] = {}

        def gen() -> SuiteResult:
            suite, holder["best"] = generator_suite(plan, progress)
            return suite

        results.append(_run_part("gpu-generator", gen, progress))
        best = holder.get("best", best)
    if "streams" in parts:
        results.append(_run_part("gpu-streams", lambda: streams_suite(plan, best, progress, simulated), progress))
    if results and results[0].suite == "gpu-generator" and results[0].status == "ok":
        start = time.perf_counter()
        compile_points(plan, results[0], progress)
        results[0].seconds += time.perf_counter() - start
    if "speech" in parts:
        results.append(_run_part("gpu-speech", lambda: speech_suite(plan, progress), progress))
    return {
        "schema": "rt-f2f-bench/1",
        "machine": machine_info(),
        "versions": versions(PACKAGES),
        "settings": {
            "quick": quick,
            "device": device,
            "suites": [r.suite for r in results],
            "budget_s": budget_s,
            "simulated generator": simulated.name if simulated else None,
            "command": "python -m benchmarks.gpu.bench_gpu " + " ".join(sys.argv[1:]),
        },  # fmt: skip
        "suites": [r.to_json() for r in results],
    }


def write_report(report: dict, out: Path) -> None:
    from rt_f2f.bench import make_plots, render_markdown, validate

    problems = validate(report)
    if problems:
        raise SystemExit("gpu bench: results failed validation: " + "; ".join(problems))
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=2))
    try:
        plots = make_plots(report, out)
    except ImportError:  # matplotlib missing on the machine: the figures stand without plots
        plots = []
    (out / "report.md").write_text(render_markdown(report, plots))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench_gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    p.add_argument("--quick", action="store_true", help="fewer points and shorter steps")
    p.add_argument("--out", default=os.environ.get("OUT") or "bench-gpu-results", help="output folder ($OUT)")
    p.add_argument("--budget-s", type=float, default=420.0, help="stop adding points past this many seconds")
    p.add_argument("--parts", nargs="+", choices=("generator", "streams", "speech"),
                   default=["generator", "streams", "speech"])  # fmt: skip
    p.add_argument("--simulate-generator", metavar="FIXED_MS,PER_FRAME_MS",
                   help="streams only: replace the model by a wait of this cost per batch, to measure the host side")  # fmt: skip
    args = p.parse_args(argv)
    simulated = None
    if args.simulate_generator:
        try:
            fixed_ms, per_frame_ms = (float(v) for v in args.simulate_generator.split(","))
        except ValueError:
            p.error("--simulate-generator takes two numbers in ms, e.g. 2,0.05")
        if args.parts != ["streams"]:
            p.error("--simulate-generator measures the streams only: add --parts streams")
        simulated = SleepGenerator(fixed_ms / 1000, per_frame_ms / 1000)
    if args.device.startswith("cuda") and not _torch().cuda.is_available():
        print("bench_gpu: error: --device cuda: torch sees no CUDA device (hint: run on the GPU machine, or use "
              "--device cpu)", file=sys.stderr)  # fmt: skip
        return 2

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    report = run(args.device, args.quick, args.budget_s, args.parts, progress, simulated)
    write_report(report, Path(args.out))
    print(f"wrote {Path(args.out) / 'results.json'} and {Path(args.out) / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
