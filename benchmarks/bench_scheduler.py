"""A/V scheduler under a realistic session, against a naive unbounded FIFO (aiortc's behaviour), in the same run.

A simulated speaker talks for ``--minutes`` (default 5), in two profiles run back to back: a *conversation*
(clauses of 0.6-2.5 s, pauses of 0.1-0.8 s and a long one now and then, translations 0.95-1.35x the source length)
and a dense *monologue* (pauses of 0.1-0.4 s, translations 1.05-1.4x: a typical en->pt expansion, so translated
speech needs more time than the speaker took, which is where an unbounded queue creeps). The speech stages deliver a
clause's first audio 1-3 s after its source starts (never before the clause has ended), then stream it in 0.5 s
chunks at 5x real time, one clause after another, and stall for 5 s about once a minute. The camera sends 25 fps
with transport jitter, 2 % reordered frames, a 0.4 s network hiccup about every 45 s and a clock 150 ppm fast.

Both contenders see the same arrivals. The scheduler runs in virtual time (pulled every 10 ms) with its defaults
(D = 2 s, D_max = 4 s, 48 kHz, at most 1.25x). The baseline plays each audio chunk as soon as it arrives or the
previous one ends, and shows video frames in arrival order, one per 1/25 s, from a queue that never drops: the way
delay piles up behind aiortc's unbounded decoded-frame queue. Figures: output delay (speech start - source start),
how far translated speech trails the face that said it, A/V offset (ITU-R BT.1359), drops and compressions per
minute, and CPU time per second of media. Images are 8x8 (the scheduler never touches pixels).

    python -m benchmarks.bench_scheduler --out scheduler.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import BenchContext, Suite, SuiteResult
from rt_f2f.av.schedule import (
    AUDIO_EARLY_LIMIT,
    AUDIO_LATE_LIMIT,
    DecisionKind,
    ScheduledAudio,
    ScheduledVideo,
    SchedulerConfig,
)
from rt_f2f.av.scheduler import AVScheduler
from rt_f2f.frames import AudioChunk, Clause, SpeechChunk, Translation, VideoFrame, Word

TTS_RATE = 22050  # Piper's rate
FPS = 25.0
CHUNK_SECONDS = 0.5
TTS_RTF = 0.2  # streaming TTS at 5x real time
STALL_SECONDS = 5.0
STALL_EVERY = 60.0
HICCUP_SECONDS = 0.4
HICCUP_EVERY = 45.0
CAMERA_PPM = 150.0
CAMERA_PTS_JITTER = 0.002  # capture timestamps are not exact either
STEP = 0.01


@dataclass(frozen=True)
class Profile:
    pause: tuple[float, float]
    long_pause_p: float
    long_pause: tuple[float, float]
    expansion: tuple[float, float]


PROFILES = {
    "conversation": Profile((0.1, 0.8), 0.10, (1.5, 4.0), (0.95, 1.35)),
    "monologue": Profile((0.1, 0.4), 0.03, (1.0, 2.0), (1.05, 1.40)),
}


@dataclass(frozen=True)
class SpeechIn:
    wall: float
    chunk: SpeechChunk


@dataclass(frozen=True)
class VideoIn:
    wall: float
    frame: VideoFrame
    capture: float  # on the audio clock


def _voice(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A voiced, speech-like signal (a few harmonics under a syllable-rate envelope): WSOLA has real work to do."""
    t = np.arange(int(seconds * TTS_RATE)) / TTS_RATE
    f0 = rng.uniform(110, 200) * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(f0) / TTS_RATE
    x = sum(np.sin(h * phase) / h for h in (1, 2, 3, 5))
    envelope = 0.5 + 0.5 * np.abs(np.sin(2 * np.pi * 2.5 * t))
    return (0.2 * x * envelope).astype(np.float32)


def _windows(total: float, every: float, length: float, rng: np.random.Generator) -> list[tuple[float, float]]:
    out, t = [], rng.exponential(every)
    while t < total:
        out.append((t, t + length))
        t += length + rng.exponential(every)
    return out


def _after(wall: float, windows: list[tuple[float, float]]) -> float:
    for start, end in windows:
        if start <= wall < end:
            return end
    return wall


def make_session(
    minutes: float, seed: int, profile: Profile = PROFILES["conversation"]
) -> tuple[list[SpeechIn], list[VideoIn], dict[str, Any]]:
    rng = np.random.default_rng(seed)
    total = minutes * 60.0
    stalls = _windows(total, STALL_EVERY, STALL_SECONDS, rng)
    speech: list[SpeechIn] = []
    t, ready, cid = 0.5, 0.0, 0
    while t < total - 3.0:
        source = rng.uniform(0.6, 2.5)
        words = (Word(" w", t, t + source / 2), Word(" w", t + source / 2, t + source))
        translation = Translation(Clause("src", words, "en", cid), "dst", "pt")
        audio = _voice(source * rng.uniform(*profile.expansion), rng)
        pieces = np.array_split(audio, max(1, round(audio.size / (CHUNK_SECONDS * TTS_RATE))))
        wall = max(t + rng.uniform(1.0, 3.0), t + source + 0.25, ready)
        for j, piece in enumerate(pieces):
            wall = _after(wall, stalls)
            chunk = SpeechChunk(AudioChunk(piece, TTS_RATE, t), translation, j == 0, j == len(pieces) - 1)
            speech.append(SpeechIn(wall, chunk))
            wall += piece.size / TTS_RATE * TTS_RTF
        ready = wall
        cid += 1
        t += source + (
            rng.uniform(*profile.long_pause) if rng.random() < profile.long_pause_p else rng.uniform(*profile.pause)
        )
    hiccups = _windows(total, HICCUP_EVERY, HICCUP_SECONDS, rng)
    image = np.zeros((8, 8, 3), np.uint8)
    video: list[VideoIn] = []
    phase = rng.uniform(0.0, 1.0 / FPS)  # the camera's frame clock is not locked to the output frame grid
    for i in range(int(total * FPS)):
        capture = phase + i / FPS
        wall = _after(capture + 0.04 + rng.exponential(0.01), hiccups)
        pts = (capture + rng.normal(0.0, CAMERA_PTS_JITTER)) * (1 + CAMERA_PPM * 1e-6)
        video.append(VideoIn(wall, VideoFrame(image, pts, i), capture))
    for k in range(len(video) - 1):
        if rng.random() < 0.02:  # reordered in transport
            a, b = video[k], video[k + 1]
            video[k], video[k + 1] = VideoIn(b.wall, a.frame, a.capture), VideoIn(a.wall, b.frame, b.capture)
    speaking = sum(s.chunk.audio.duration for s in speech)
    info = {
        "clauses": cid,
        "translated_speech_per_session_s": speaking / total,
        "stalls": len(stalls),
        "hiccups": len(hiccups),
        "frames": len(video),
    }
    return speech, video, info


def _stats(values: Sequence[float]) -> dict[str, float | None]:
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return {"p50": None, "p95": None, "max": None, "n": 0}
    return {
        "p50": float(np.percentile(arr, 50)),
        "p95": float(np.percentile(arr, 95)),
        "max": float(arr.max()),
        "n": int(arr.size),
    }


def _per_minute(times: Sequence[float], values: Sequence[float], minutes: float) -> list[float | None]:
    t, v = np.asarray(times, float), np.asarray(values, float)
    out = []
    for m in range(int(np.ceil(minutes))):
        sel = v[(t >= 60 * m) & (t < 60 * (m + 1))]
        out.append(float(sel.mean()) if sel.size else None)
    return out


def _creep(times: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares trend of a delay, in seconds per minute of session."""
    if len(times) < 2:
        return 0.0
    return float(np.polyfit(np.asarray(times) / 60.0, np.asarray(values), 1)[0])


def run_scheduler(speech: list[SpeechIn], video: list[VideoIn], minutes: float, config: SchedulerConfig):
    sched = AVScheduler(config, origin_wall=0.0)
    events = sorted([(s.wall, 0, s) for s in speech] + [(v.wall, 1, v) for v in video], key=lambda e: (e[0], e[1]))
    capture = {v.frame.index: v.capture for v in video}
    audio_pts: list[float] = []
    true_offsets: list[float] = []
    video_delay: list[float] = []
    last_video = -np.inf
    monotonic = True

    def take(items: list) -> None:
        nonlocal last_video, monotonic
        for item in items:
            if isinstance(item, ScheduledAudio):
                audio_pts.append(item.pts)
            elif isinstance(item, ScheduledVideo):
                monotonic &= item.pts > last_video
                last_video = item.pts
                if not item.repeat:
                    true_offsets.append(capture[item.frame.index] + config.delay - item.pts)
                    video_delay.append(item.pts - capture[item.frame.index])

    end = max(e[0] for e in events) + 1.0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    now, i, k = 0.0, 0, 0
    while now <= end:
        while i < len(events) and events[i][0] <= now:
            wall, kind, event = events[i]
            if kind == 0:
                sched.push_speech(event.chunk, wall)
            else:
                sched.push_video(event.frame, wall)
            i += 1
        take(sched.pull(now))
        k += 1
        now = k * STEP
    take(sched.flush())
    cpu, elapsed = time.process_time() - cpu0, time.perf_counter() - wall0
    steps = np.diff(audio_pts)
    monotonic &= bool(np.all(steps > 0))
    m = sched.metrics()
    starts = [c.start_out for c in m.clauses]
    delays = [c.start_delay for c in m.clauses]
    media = minutes * 60.0
    return {
        "output_delay_s": _stats(delays),
        "output_end_delay_s": _stats([c.end_delay for c in m.clauses]),
        "output_delay_per_minute_s": _per_minute(starts, delays, minutes),
        "output_delay_creep_s_per_min": _creep(starts, delays),
        "speech_to_face_skew_s": _stats([c.start_out - (c.source_start + config.delay) for c in m.clauses]),
        "av_offset_abs_s": _stats(np.abs(m.av_offsets)),
        "av_offset_true_abs_s": _stats(np.abs(true_offsets)),
        "av_offset_in_bt1359": float(
            np.mean((np.array(true_offsets) >= -AUDIO_EARLY_LIMIT) & (np.array(true_offsets) <= AUDIO_LATE_LIMIT))
        ),
        "video_delay_s": _stats(video_delay),
        "clauses_placed": len(m.clauses),
        "clauses_dropped": m.count(DecisionKind.DROP),
        "drops_per_minute": m.count(DecisionKind.DROP) / minutes,
        "compressions_per_minute": len({d.clause_id for d in m.decisions if d.kind == DecisionKind.COMPRESS}) / minutes,
        "late_starts_per_minute": m.count(DecisionKind.LATE) / minutes,
        "underruns_per_minute": m.count(DecisionKind.UNDERRUN) / minutes,
        "max_rate": max([c.rate for c in m.clauses], default=1.0),
        "video_shown": m.video_shown,
        "video_repeated": m.video_repeated,
        "video_dropped": m.video_dropped,
        "video_received": m.video_received,
        "drift_ppm_estimated": m.drift_ppm,
        "timestamps_monotonic": bool(monotonic),
        "cpu_ms_per_media_s": 1000 * cpu / media,
        "wall_s": elapsed,
        "delay_series": m.delay_series(),
    }


def run_baseline(speech: list[SpeechIn], video: list[VideoIn], minutes: float) -> dict[str, Any]:
    """Unbounded FIFOs: audio chunks play on arrival or after the previous one; frames leave one per 1/fps."""
    cpu0 = time.process_time()
    starts: dict[int, float] = {}
    source: dict[int, float] = {}
    busy = 0.0
    for s in sorted(speech, key=lambda s: s.wall):
        play = max(s.wall, busy)
        busy = play + s.chunk.audio.duration
        cid = s.chunk.translation.source.clause_id
        if cid not in starts:
            starts[cid] = play
            source[cid] = s.chunk.translation.source.pts
    display: dict[int, float] = {}
    shown = -np.inf
    for v in sorted(video, key=lambda v: v.wall):
        shown = max(v.wall, shown + 1.0 / FPS)
        display[v.frame.index] = shown
    cpu = time.process_time() - cpu0
    cids = sorted(starts)
    delays = [starts[c] - source[c] for c in cids]
    skew = [starts[c] - display[min(round(source[c] * FPS), len(video) - 1)] for c in cids]
    frames = sorted(display)
    video_delay = [display[i] - i / FPS for i in frames]
    return {
        "output_delay_s": _stats(delays),
        "output_delay_per_minute_s": _per_minute([starts[c] for c in cids], delays, minutes),
        "output_delay_creep_s_per_min": _creep([starts[c] for c in cids], delays),
        "speech_to_face_skew_s": _stats(skew),
        "video_delay_s": _stats(video_delay),
        "video_delay_per_minute_s": _per_minute([i / FPS for i in frames], video_delay, minutes),
        "video_delay_creep_s_per_min": _creep([i / FPS for i in frames], video_delay),
        "clauses_placed": len(cids),
        "clauses_dropped": 0,
        "cpu_ms_per_media_s": 1000 * cpu / (minutes * 60.0),
        "delay_series": list(zip([starts[c] for c in cids], delays, strict=True)),
    }


def run_benchmark(minutes: float = 5.0, seed: int = 0, sample_rate: int = 48000) -> dict[str, Any]:
    config = SchedulerConfig(sample_rate=sample_rate)
    result: dict[str, Any] = {
        "settings": {
            "minutes": minutes,
            "seed": seed,
            "delay_s": config.delay,
            "max_delay_s": config.max_delay,
            "max_rate": config.max_rate,
            "sample_rate": sample_rate,
            "fps": FPS,
            "tts_rate": TTS_RATE,
            "camera_ppm": CAMERA_PPM,
            "pull_every_s": STEP,
        }
    }
    for name, profile in PROFILES.items():
        speech, video, info = make_session(minutes, seed, profile)
        result[name] = {
            "session": info,
            "scheduler": run_scheduler(speech, video, minutes, config),
            "baseline_fifo": run_baseline(speech, video, minutes),
        }
    return result


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def report(result: dict[str, Any]) -> str:
    lines = []
    for name in PROFILES:
        s, b = result[name]["scheduler"], result[name]["baseline_fifo"]
        rows = [
            ("output delay p50 (s)", s["output_delay_s"]["p50"], b["output_delay_s"]["p50"]),
            ("output delay p95 (s)", s["output_delay_s"]["p95"], b["output_delay_s"]["p95"]),
            ("output delay max (s)", s["output_delay_s"]["max"], b["output_delay_s"]["max"]),
            ("delay trend (s per minute)", s["output_delay_creep_s_per_min"], b["output_delay_creep_s_per_min"]),
            ("speech-to-face skew p95 (s)", s["speech_to_face_skew_s"]["p95"], b["speech_to_face_skew_s"]["p95"]),
            ("video delay max (s)", s["video_delay_s"]["max"], b["video_delay_s"]["max"]),
            ("A/V offset |p95| (s)", s["av_offset_true_abs_s"]["p95"], None),
            ("A/V offset in BT.1359 window", s["av_offset_in_bt1359"], None),
            ("camera drift estimated (ppm)", s["drift_ppm_estimated"], None),
            ("clauses dropped / minute", s["drops_per_minute"], 0.0),
            ("clauses compressed / minute", s["compressions_per_minute"], 0.0),
            ("CPU ms per s of media", s["cpu_ms_per_media_s"], b["cpu_ms_per_media_s"]),
        ]
        info = result[name]["session"]
        lines.append(
            f"== {name}: {info['clauses']} clauses, translated speech fills "
            f"{100 * info['translated_speech_per_session_s']:.0f} % of the session, {info['stalls']} stalls"
        )
        lines.append(f"{'':32s} {'scheduler':>10s} {'FIFO':>10s}")
        lines += [f"{label:32s} {_fmt(x):>10s} {_fmt(y):>10s}" for label, x, y in rows]
        per_s = ", ".join(_fmt(v) for v in s["output_delay_per_minute_s"])
        per_b = ", ".join(_fmt(v) for v in b["output_delay_per_minute_s"])
        lines.append(f"mean output delay per minute (s): scheduler [{per_s}]  FIFO [{per_b}]")
    return "\n".join(lines)


def run(ctx: BenchContext) -> SuiteResult:
    """``rt-f2f bench`` suite entry (see benchmarks.common): 1 minute per profile with --quick, else 5."""
    result = run_benchmark(minutes=1.0 if ctx.quick else 5.0)
    out = SuiteResult("scheduler", settings=result["settings"])
    for name in PROFILES:
        s, b = result[name]["scheduler"], result[name]["baseline_fifo"]
        n_s, n_b = s["output_delay_s"]["n"], b["output_delay_s"]["n"]
        for key in ("p50", "p95", "max"):
            out.add(f"{name}: output delay {key}", s["output_delay_s"][key], "s", n_s)
            out.add(f"{name}: output delay {key} (FIFO baseline)", b["output_delay_s"][key], "s", n_b)
        out.add(f"{name}: delay trend", s["output_delay_creep_s_per_min"], "s/min", n_s)
        out.add(f"{name}: delay trend (FIFO baseline)", b["output_delay_creep_s_per_min"], "s/min", n_b)
        n_v = s["av_offset_true_abs_s"]["n"]
        out.add(f"{name}: A/V offset |p95|", s["av_offset_true_abs_s"]["p95"], "s", n_v)
        out.add(f"{name}: A/V offset inside BT.1359", s["av_offset_in_bt1359"], "fraction", n_v, "higher")
        out.add(f"{name}: clauses dropped", s["drops_per_minute"], "/min", n_s + s["clauses_dropped"])
        out.add(f"{name}: clauses compressed", s["compressions_per_minute"], "/min", n_s)
        out.add(f"{name}: scheduler CPU", s["cpu_ms_per_media_s"], "ms per s of media", 1)
        for label, series in ((name, s["delay_series"]), (f"{name} FIFO baseline", b["delay_series"])):
            t, v = zip(*series, strict=True) if series else ((), ())
            out.series[f"delay:{label}"] = {"t": list(t), "v": list(v)}
    return out


SUITE = Suite("scheduler", "A/V scheduler: bounded output delay vs an unbounded FIFO, same arrivals", run)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample-rate", type=int, default=48000)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    result = run_benchmark(args.minutes, args.seed, args.sample_rate)
    print(json.dumps(result["settings"]))
    print(report(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
