"""Pipeline suite: the real-time face-to-face pipeline (``FaceToFace``, input paced at real time) on a talking clip,
with Wav2Lip lip-sync and, in the same run, without it (the baseline: the delayed video passes through) to show
what lip-sync costs.

The clip is the tests' talking clip: a real face photo moving a little, with the repository's English sample as its
sound, written to an MP4 and read back as ``rt-f2f translate`` does. The generator has random weights in the
released checkpoint format (no weights install here): its cost is real, its mouths mean nothing.

Figures per run: ear-voice span, output frame rate achieved on the wall clock, the share of frames lip-sync
re-rendered or skipped because it fell behind, output delay against ``max_delay``, A/V offset, and how often each
stage was the bottleneck. A clause's bottleneck is the stage that spent the most compute on it (engine latency
log; lip-sync's share is its mean generator time per frame times the frames of the clause's source stretch, the
video it has to re-mouth for that clause).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import BenchContext, Suite, SuiteResult, skipped
from benchmarks.suite_lipsync import shared_checkpoint
from rt_f2f.rates import ENGINE_RATE

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "en_sample.wav"
TESTS = REPO / "tests"
QUICK_SECONDS = 3.2  # "he was not an ill disposed young man"
FPS = 25.0
SIZE = 256
DELAY, MAX_DELAY = 2.0, 4.0
MOTION_FRAMES = 100  # the photo moves back and forth over this many frames, so it stays in view on long clips


def _moving_frames(n: int, size: int) -> list[np.ndarray]:
    sys.path.insert(0, str(TESTS))
    try:
        from media_fixtures import moving_frames
    finally:
        sys.path.remove(str(TESTS))
    return moving_frames(n, size)


def build_clip(folder: Path, seconds: float) -> Path:
    """The talking clip: the moving face photo with the English sample's first ``seconds`` as AAC sound."""
    from rt_f2f.audio import read_audio
    from rt_f2f.video import write_video

    audio = read_audio(SAMPLE, ENGINE_RATE)[: int(seconds * ENGINE_RATE)]
    n = int(round(audio.size / ENGINE_RATE * FPS))
    cycle = _moving_frames(min(n, MOTION_FRAMES), SIZE)
    period = max(1, 2 * len(cycle) - 2)
    frames = [cycle[min(i % period, period - i % period)] for i in range(n)]  # ping-pong through the motion
    path = folder / "talk.mp4"
    write_video(path, frames, FPS, audio=audio)
    return path


def _clause_costs(result: Any, log: Any, generator_s_per_frame: float | None) -> list[dict[str, float]]:
    """Compute per translated clause (placed or dropped) and stage; see the module docstring for lip-sync's share.

    Clauses are the translation captions (their source span); ASR calls belong to the clause their last committed
    word falls in, TTS and VC records to the clause whose start TTS stamped on the chunk.
    """
    spans = sorted((c.start, c.end) for c in result.captions if c.kind == "translation")
    tts = log.for_stage("tts")
    vc = [r for r in log.records if r.stage in ("vc", "vc:passthrough")]
    chunk_clause = [r.media_in for r in tts]  # TTS stamps every chunk of a clause with the clause's start
    costs = []
    previous_end = -np.inf
    for start, end in spans:
        mine = [i for i, m in enumerate(chunk_clause) if abs(m - start) < 1e-6]
        cost = {
            "asr": sum(r.compute for r in log.for_stage("asr") if previous_end < r.media_out <= end + 1e-6),
            "mt": sum(r.compute for r in log.for_stage("mt") if abs(r.media_in - start) < 1e-6),
            # a TTS record's wall_in is the clause's: the last chunk's record spans the whole clause
            "tts": max((tts[i].compute for i in mine), default=0.0),
            "vc": sum(vc[i].compute for i in mine if i < len(vc)),
        }
        if generator_s_per_frame is not None:
            cost["lipsync"] = (end - start) * FPS * generator_s_per_frame
        costs.append(cost)
        previous_end = end
    return costs


async def _drive(pipeline: Any, samples: np.ndarray, video: Path, out: Path) -> tuple[Any, list[float]]:
    from rt_f2f.video import VideoWriter, read_frames

    written: list[float] = []
    with VideoWriter(out, FPS) as writer:

        def write(image: np.ndarray) -> None:
            writer.write(image)
            written.append(time.monotonic())

        result = await pipeline.run(samples, read_frames(video), write)
    return result, written


def run_once(models: Any, samples: np.ndarray, video: Path, out: Path, lipsync: Any | None) -> dict[str, Any]:
    from rt_f2f.av.config import FaceToFaceConfig, ear_voice_spans
    from rt_f2f.av.facetoface import FaceToFace
    from rt_f2f.speech import SpeechConfig, SpeechEngine

    engine = SpeechEngine(SpeechConfig(source="en", target="pt"), models)
    config = FaceToFaceConfig(delay=DELAY, max_delay=MAX_DELAY, fps=FPS, realtime=True, lipsync_batch=8)
    result, written = asyncio.run(_drive(FaceToFace(engine, config, lipsync), samples, video, out))
    metrics = result.scheduler.metrics()
    origin = result.scheduler.origin_wall
    span = (written[-1] - written[0]) if len(written) > 1 else 0.0
    generator = None
    if lipsync is not None and result.lipsync_rendered:
        generator = lipsync.stats.infer_seconds / result.lipsync_rendered
    lags = list(result.render_lag)
    return {
        "result": result,
        "metrics": metrics,
        "summary": metrics.summary(),
        "spans": ear_voice_spans(result),
        "fps": (len(written) - 1) / span if span > 0 else 0.0,
        "video_delay": {"t": [w - origin for w in written], "v": [DELAY + lag for lag in lags[: len(written)]]},
        "costs": _clause_costs(result, engine.log, generator),
        "latency": engine.log.summary(),
        "generator_s": lipsync.stats.infer_seconds if lipsync is not None else 0.0,
        "lags": lags,
    }


def _report(out: SuiteResult, label: str, r: dict[str, Any], duration: float, lipsync: bool) -> None:
    res, s = r["result"], r["summary"]
    frames = res.frames_written
    out.add_stats(f"{label}: ear-voice span", r["spans"], "s")
    out.add(f"{label}: output fps on the wall clock", r["fps"], "frames/s", frames, "higher", note=f"input {FPS:g} fps")
    out.add(
        f"{label}: wall time / clip length", res.wall_seconds / duration, "x", 1, note="run ends when speech drains"
    )
    out.add(f"{label}: frames repeated (freeze)", s["video_repeated"] / max(1, frames), "fraction", frames)
    delays = [d for _, d in r["metrics"].delay_series()]
    if delays:
        out.add(f"{label}: output delay max", max(delays), "s", len(delays), note=f"bound --max-delay {MAX_DELAY:g} s")
    out.add(f"{label}: clauses dropped", s["clauses_dropped"], "clauses", s["clauses_placed"] + s["clauses_dropped"])
    out.add(
        f"{label}: clauses kept past max_delay",
        s["clauses_over_bound"],
        "clauses",
        s["clauses_placed"] + s["clauses_dropped"],
        note="played late (and compressed) rather than dropped: the default keeps what was said",
    )
    drops = [d for d in r["metrics"].decisions if d.kind == "drop" and d.delay is not None]
    if drops:
        out.add_stats(f"{label}: start delay a dropped clause would have had", [d.delay for d in drops], "s")
    n_av = int(r["metrics"].av_offsets.size)
    if n_av:
        out.add(f"{label}: A/V offset, absolute p95", s["av_offset_abs_p95_s"], "s", n_av)
        out.add(f"{label}: A/V offset inside BT.1359", s["av_offset_in_bt1359"], "fraction", n_av, "higher")
    video_delay = r["video_delay"]["v"]
    if video_delay:
        out.add_stats(f"{label}: video output delay", video_delay, "s")
        over = sum(d > MAX_DELAY for d in video_delay) / len(video_delay)
        out.add(f"{label}: video frames later than --max-delay", over, "fraction", len(video_delay))
    if lipsync:
        out.add(f"{label}: frames re-rendered by lip-sync", res.lipsync_rendered / max(1, frames), "fraction", frames,
                "higher")  # fmt: skip
        out.add(f"{label}: frames skipped, lip-sync behind", res.lipsync_skipped_behind / max(1, frames), "fraction",
                frames)  # fmt: skip
        out.add(f"{label}: lip-sync real-time factor", r["generator_s"] / duration, "compute s / media s", frames)
        if r["lags"]:
            out.add_stats(f"{label}: lip-sync render lag", r["lags"], "s")
    for stage in ("asr", "tts", "vc"):
        if stage in r["latency"]:
            stats = r["latency"][stage]
            out.add(f"{label}: {stage} real-time factor", stats["compute_total_s"] / duration, "compute s / media s",
                    stats["count"])  # fmt: skip
    costs = r["costs"]
    if costs:
        winners = [max(c, key=c.get) for c in costs]
        for stage in costs[0]:
            out.add(f"{label}: bottleneck share {stage}", winners.count(stage) / len(winners), "fraction of clauses",
                    len(winners), "none")  # fmt: skip


def run(ctx: BenchContext) -> SuiteResult:
    if not SAMPLE.exists():
        return skipped("pipeline", f"{SAMPLE} is missing (it ships with the repository)")
    try:
        import pytest  # the tests' media helpers skip through pytest where their sources are not installed
    except ImportError:
        return skipped("pipeline", "the talking clip is built with the tests' media helpers, which need pytest")
    from rt_f2f.audio import read_audio
    from rt_f2f.errors import RtF2fError
    from rt_f2f.lipsync.backends import default_backend, load_backend
    from rt_f2f.lipsync.stream import LipSyncStream
    from rt_f2f.speech import SpeechConfig, load_models

    seconds = QUICK_SECONDS if ctx.quick else 60.0  # the whole sample otherwise (11.6 s)
    try:
        models = load_models(SpeechConfig(source="en", target="pt"))
    except RtF2fError as exc:
        return skipped("pipeline", f"{exc.message} ({exc.hint})")
    with tempfile.TemporaryDirectory(prefix="rt-f2f-bench-pipeline-") as tmp:
        folder = Path(tmp)
        try:
            video = build_clip(folder, seconds)
        except pytest.skip.Exception as exc:
            return skipped("pipeline", f"no talking clip can be built here: {exc}")
        samples = read_audio(video, ENGINE_RATE)  # the clip's own (AAC-decoded) sound, as `rt-f2f translate` reads it
        duration = samples.size / ENGINE_RATE
        backend_name = default_backend()
        backend = load_backend(backend_name, shared_checkpoint())
        backend.warmup(4)
        result = SuiteResult(
            "pipeline",
            settings={"clip_seconds": duration, "fps": FPS, "size": SIZE, "delay": DELAY, "max_delay": MAX_DELAY,
                      "lipsync_backend": backend_name, "lipsync_batch": 8, "weights": "random (speed only)"},
        )  # fmt: skip
        runs = {}
        for label, with_lipsync in (("no lip-sync (baseline)", False), ("rt-f2f", True)):
            ctx.progress(f"  pipeline: {label}, {duration:.1f} s clip at real-time pace")
            stream = LipSyncStream(backend, fps=FPS, batch_size=8, max_latency_s=0.5) if with_lipsync else None
            runs[label] = run_once(models, samples, video, folder / f"out-{with_lipsync}.mp4", stream)
        backend.close()
    for label, r in runs.items():
        _report(result, label, r, duration, lipsync=label == "rt-f2f")
        result.series[f"delay:{label} video"] = r["video_delay"]
        result.series[f"cdf:{label} ear-voice span"] = r["spans"]
    ours, base = runs["rt-f2f"], runs["no lip-sync (baseline)"]
    if ours["spans"] and base["spans"]:
        result.add(
            "ear-voice span p50, with / without lip-sync",
            float(np.median(ours["spans"]) / np.median(base["spans"])),
            "x",
            len(ours["spans"]),
            note="above 1: lip-sync's compute slowed the speech path on the shared cores",
        )
    if base["fps"] > 0:
        result.add("output fps, with / without lip-sync", ours["fps"] / base["fps"], "x",
                   ours["result"].frames_written, "higher")  # fmt: skip
    result.settings["decisions"] = {
        label: [f"{d.kind} clause {d.clause_id}: {d.reason}".rstrip(": ") for d in r["metrics"].decisions]
        for label, r in runs.items()
    }
    result.settings["translation"] = " ".join(c.text for c in ours["result"].captions if c.kind == "translation")
    return result


SUITE = Suite("pipeline", "real-time face-to-face pipeline with lip-sync vs without it, same clip", run)
