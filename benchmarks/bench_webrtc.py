"""Mouth-to-ear delay through the whole WebRTC call path, translated and untranslated, in the same run.

One aiortc participant (the speaker) sends LibriVox English sentences through the call server (in this process,
over real UDP/DTLS/SRTP) to two listeners at once: one who hears Portuguese (the speech engine translates) and one
who hears English (passthrough: network, Opus, the server's jitter buffer, decode and encode: the baseline). The
sentences go one at a time, each once the previous one's translation has been heard out (``--max-wait`` at most),
so every figure is one sentence through an idle pipeline, not a backlog: the *mouth* time is when the sentence's
first voiced sample left the speaker's track, the *ear* time when the first audible sample a listener got for it
arrived (everything heard between one sentence and the next belongs to the first), and the figure is the wait
before the translation starts. Models load before anyone speaks (the server shares them per language pair).

    python -m benchmarks.bench_webrtc --out webrtc.json [--sentences 5] [--target pt] [--loopback]

With ``--loopback`` ICE uses 127.0.0.1 (for hosts without a network interface); otherwise the host's addresses.
Prints a table and writes JSON. Also ``rt-f2f bench`` suite ``webrtc`` (``SUITE``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import BenchContext, Suite, SuiteResult

EXAMPLE_CLIPS = ("0880", "0890", "0930", "0870", "0920")
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
FRAME = 960  # 20 ms at 48 kHz
ON_RMS = 0.01  # a 20 ms frame louder than this is sound (Opus-coded silence decodes far below it)


@dataclass
class Sentence:
    clip: str
    audio: np.ndarray  # 16 kHz
    voiced: float  # seconds into the clip of its first voiced frame


@dataclass
class Run:
    sentences: list[Sentence]
    mouth: list[float]  # wall time (time.monotonic) each sentence's first voiced sample left the speaker
    heard: dict[str, list[float | None]]  # listener -> per-sentence first-sound arrival wall time
    join_s: list[float]
    server_stats: dict[str, Any]
    engine_state: str
    engine_detail: str = ""
    captions: list[dict[str, Any]] = field(default_factory=list)


def first_voiced(samples: np.ndarray, rate: int) -> float:
    frame = rate // 50
    for i in range(0, samples.size - frame, frame):
        if np.sqrt(np.mean(samples[i : i + frame] ** 2)) > ON_RMS * 2:
            return i / rate
    return 0.0


def load_sentences(clips: list[str], rate: int = 16000) -> list[Sentence]:
    from rt_f2f.audio import read_audio

    sentences = []
    for clip in clips:
        path = next(LIBRIVOX.glob(f"*-{clip}.wav"), None)
        if path is None:
            raise FileNotFoundError(f"LibriVox clip {clip} not found in {LIBRIVOX} (Debian pocketsphinx-testdata)")
        audio = read_audio(path, rate)
        sentences.append(Sentence(clip, audio, first_voiced(audio, rate)))
    return sentences


def onsets(times: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """Arrival times of frames that turn from silence to sound."""
    n = samples.size // FRAME
    if n == 0:
        return np.zeros(0)
    rms = np.sqrt(np.mean(samples[: n * FRAME].reshape(n, FRAME) ** 2, axis=1))
    on = rms > ON_RMS
    starts = np.flatnonzero(on & ~np.concatenate([[False], on[:-1]]))
    return times[starts * FRAME]


def first_heard(found: np.ndarray, mouths: list[float]) -> list[float | None]:
    """Per sentence, the first sound onset from its mouth time (50 ms early allowed: clock granularity) until the
    next sentence's; None when nothing was heard in between."""
    ends = mouths[1:] + [float("inf")]
    heard: list[float | None] = []
    for start, end in zip(mouths, ends, strict=True):
        inside = found[(found >= start - 0.05) & (found < end)]
        heard.append(float(inside[0]) if inside.size else None)
    return heard


def last_sound(times: np.ndarray, samples: np.ndarray) -> float | None:
    n = samples.size // FRAME
    if n == 0:
        return None
    rms = np.sqrt(np.mean(samples[: n * FRAME].reshape(n, FRAME) ** 2, axis=1))
    loud = np.flatnonzero(rms > ON_RMS)
    return float(times[loud[-1] * FRAME]) if loud.size else None


@contextlib.contextmanager
def loopback_ice(enabled: bool = True) -> Iterator[None]:
    """ICE gathers 127.0.0.1 alone while the block runs (aioice otherwise skips it); the original comes back after,
    because the process may go on to make other connections (a test session running the bench does)."""
    import aioice.ice

    original = aioice.ice.get_host_addresses
    if enabled:
        aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"]
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = original


async def measure(
    clips: list[str], target: str, loopback: bool, voice_conversion: bool, max_wait: float = 90.0, quiet: float = 2.0
) -> Run:
    """Sentences one at a time: each is spoken once the previous one's translation has been heard out."""
    with loopback_ice(loopback):
        return await _measure(clips, target, voice_conversion, max_wait, quiet)


async def _measure(clips: list[str], target: str, voice_conversion: bool, max_wait: float, quiet: float) -> Run:

    from rt_f2f.server.app import ServerConfig, create_app, serve_locally
    from rt_f2f.server.client import ArrayAudioTrack, PatternVideoTrack, RoomClient, create_room
    from rt_f2f.server.feeds.engine import speech_engine_factory
    from rt_f2f.server.feeds.factory import default_feed_factory

    sentences = load_sentences(clips)
    engines = speech_engine_factory(voice_conversion)
    await asyncio.to_thread(engines("en", target).load)  # models load once, before anyone speaks
    app = create_app(ServerConfig(web_dir=None), default_feed_factory(engines))
    runner, base = await serve_locally(app)
    room = await create_room(base)
    record_s = len(clips) * (max_wait + 15)
    translated = RoomClient(base, room["id"], room["token"], name=target, speak=target, hear=target, slots=2,
                            record_audio_s=record_s)  # fmt: skip
    direct = RoomClient(base, room["id"], room["token"], name="en", speak="en", hear="en", slots=2,
                        record_audio_s=record_s)  # fmt: skip
    mic = ArrayAudioTrack(np.zeros(0, np.float32), 16000)
    speaker = RoomClient(base, room["id"], room["token"], name="speaker", speak="en", hear="en", slots=2,
                         audio=mic, video=PatternVideoTrack(320, 240, 15))  # fmt: skip
    join_s = []
    try:
        for client in (translated, direct, speaker):
            t = time.monotonic()
            await client.join()
            join_s.append(time.monotonic() - t)
        sid = speaker.participant["id"]

        def engine_state() -> dict[str, Any]:
            states = [m for m in translated.messages if m["type"] == "status" and m["speaker"] == sid]
            return states[-1] if states else {}

        await translated.wait_for(lambda: engine_state().get("state") in ("running", "error"), 120)
        await asyncio.sleep(1.0)
        slot = translated.slots[translated.slot_of(sid)]
        mouth: list[float] = []
        for sentence in sentences:
            mic.play(sentence.audio, 16000)
            await translated.wait_for(lambda: mic.switched is not None, 5)
            mouth.append(mic.switched + sentence.voiced)
            spoken_until = mic.switched + sentence.audio.size / 16000

            def heard_out(spoken_until: float = spoken_until) -> bool:
                last = last_sound(slot.audio_times(), slot.audio_samples_array())
                now = time.monotonic()
                return now > spoken_until + 1.0 and last is not None and last > mouth[-1] and now - last > quiet

            with contextlib.suppress(TimeoutError):
                await translated.wait_for(heard_out, max_wait, poll=0.25)
        heard: dict[str, list[float | None]] = {}
        for name, listener in (("translated", translated), ("passthrough", direct)):
            rec = listener.slots[listener.slot_of(sid)]
            heard[name] = first_heard(onsets(rec.audio_times(), rec.audio_samples_array()), mouth)
        stats = [m for m in translated.messages if m["type"] == "stats"]
        state = engine_state()
        return Run(
            sentences,
            mouth,
            heard,
            join_s,
            stats[-1]["speakers"].get(sid, {}) if stats else {},
            state.get("state", "unknown"),
            state.get("detail", ""),
            [c for c in translated.captions if c["speaker"] == sid and c["final"]],
        )
    finally:
        for client in (speaker, translated, direct):
            await client.close()
        await runner.cleanup()


def summarise(run: Run) -> dict[str, Any]:
    out: dict[str, Any] = {
        "sentences": [s.clip for s in run.sentences],
        "engine": {"state": run.engine_state, "detail": run.engine_detail},
        "join_s": run.join_s,
        "server_stats": run.server_stats,
        "captions": [{k: c[k] for k in ("kind", "language", "text")} for c in run.captions],
    }
    for name in ("translated", "passthrough"):
        out[name] = delay_summary(
            [None if h is None else h - m for h, m in zip(run.heard[name], run.mouth, strict=True)]
        )
    return out


def delay_summary(delays: list[float | None]) -> dict[str, Any]:
    """Per-sentence mouth-to-ear delays (None: never heard) and their percentiles."""
    d = [x for x in delays if x is not None]
    return {
        "mouth_to_ear_s": delays,
        "missed": sum(x is None for x in delays),
        "p50_s": float(np.percentile(d, 50)) if d else None,
        "p95_s": float(np.percentile(d, 95)) if d else None,
        "max_s": float(max(d)) if d else None,
    }


def add_figures(result: SuiteResult, summary: dict[str, Any], label: str = "") -> None:
    """The suite's figures: mouth-to-ear per path, missed sentences, and translated over passthrough."""
    n = len(summary["sentences"])
    for name in ("translated", "passthrough"):
        values = [d for d in summary[name]["mouth_to_ear_s"] if d is not None]
        result.add_stats(f"{name} mouth-to-ear{label}", values, "s")
        result.series[f"cdf:{name} mouth-to-ear{label} (s)"] = values
        result.add(f"{name} missed sentences", summary[name]["missed"], "count", n)
    base, trans = summary["passthrough"]["p50_s"], summary["translated"]["p50_s"]
    if base and trans:
        result.add(f"translated / passthrough mouth-to-ear p50{label}", trans / base, "ratio", n)


def print_summary(summary: dict[str, Any], out: Path | None) -> None:
    print(f"{'sentence':>9} {'translated':>11} {'passthrough':>12}")
    for i, clip in enumerate(summary["sentences"]):
        cells = [summary[n]["mouth_to_ear_s"][i] for n in ("translated", "passthrough")]
        print(f"{clip:>9} " + " ".join(f"{'missed' if c is None else f'{c:.2f} s':>11}" for c in cells))
    for name in ("translated", "passthrough"):
        m = summary[name]
        if m["p50_s"] is not None:
            print(f"{name}: p50 {m['p50_s']:.2f} s, p95 {m['p95_s']:.2f} s, missed {m['missed']}")
    base, trans = summary["passthrough"]["p50_s"], summary["translated"]["p50_s"]
    if base and trans:
        print(f"translated / passthrough p50: {trans / base:.1f}x")
    if out:
        out.write_text(json.dumps(summary, indent=2, ensure_ascii=False))
        print(f"wrote {out}")


def run_suite(ctx: BenchContext) -> SuiteResult:
    clips = list(EXAMPLE_CLIPS[: 2 if ctx.quick else 5])
    result = SuiteResult(suite="webrtc", settings={"sentences": clips, "target": "pt"})
    run = asyncio.run(measure(clips, "pt", loopback=False, voice_conversion=True))
    add_figures(result, summarise(run))
    result.add_stats("join (offer -> connected)", run.join_s, "s")
    if run.engine_state != "running":
        result.status, result.reason = "failed", f"speech engine {run.engine_state}: {run.engine_detail}"
    return result


SUITE = Suite("webrtc", "mouth-to-ear delay through the WebRTC call server, translated vs passthrough", run_suite)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument(
        "--sentences", type=int, default=5, help=f"how many LibriVox sentences (max {len(EXAMPLE_CLIPS)})"
    )
    parser.add_argument("--max-wait", type=float, default=90.0, help="seconds to wait for one sentence's translation")
    parser.add_argument("--target", default="pt", help="the translated listener's language")
    parser.add_argument("--loopback", action="store_true", help="ICE over 127.0.0.1 only")
    parser.add_argument("--no-voice-conversion", action="store_true")
    args = parser.parse_args(argv)
    clips = list(EXAMPLE_CLIPS[: max(1, min(args.sentences, len(EXAMPLE_CLIPS)))])
    run = asyncio.run(measure(clips, args.target, args.loopback, not args.no_voice_conversion, args.max_wait))
    summary = summarise(run)
    print(f"engine: {run.engine_state} {run.engine_detail}".rstrip())
    print(f"join (offer -> connected): {', '.join(f'{s:.2f}' for s in run.join_s)} s")
    print_summary(summary, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
