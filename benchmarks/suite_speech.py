"""Speech suite: the speech engine live (English in, Portuguese out, input paced at real time) against translating
the same recording offline as one block, in the same run.

rt-f2f's figure is the ear-voice span: from the end of a clause's first source word to the moment its translated
audio exists (the engine's own report). The baseline hears the whole recording, then transcribes it with Whisper,
translates the whole text, synthesises the whole translation and converts its voice: its translated audio can start
only after the recording ended plus all that compute, so its ear-voice span for the first words is that moment
minus the end of the first word. Per-stage real-time factors and compute times come from the engine's latency
log, and the first clause's path through the stages is drawn as a waterfall. A second live run with Whisper padded
to 30 s per step (the ASR default before the encoder window) shows what the window buys the live path.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import BenchContext, Suite, SuiteResult, skipped

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "en_sample.wav"
QUICK_SECONDS = 6.0  # "he was not an ill disposed young man, unless to be rather cold hearted and rather ..."
STAGE_ORDER = ("vad", "asr", "clauses", "mt", "tts", "vc", "vc:passthrough")
_EPS = 1e-6


def first_clause_waterfall(run: Any, t0: float) -> list[dict[str, float | str]]:
    """Bars for the first clause, in seconds after its first source word ended (session time = wall - t0).

    Each stage's bar is the hop that moved this clause on: the VAD hop that delivered the audio of its last word,
    the ASR call that committed its last word, the clause emission, its translation, its first TTS chunk and the
    conversion of that chunk. Gaps between bars are time spent waiting in queues (usually behind ASR).
    """
    if not run.clauses:
        return []
    clause = run.clauses[0]
    ref = clause.first_word_end
    log = run.log

    def bar(stage: str, records: list) -> dict[str, float | str] | None:
        if not records:
            return None
        r = records[0]
        return {"stage": stage, "start": r.wall_in - t0 - ref, "end": r.wall_out - t0 - ref}

    end = clause.source_end
    bars = [{"stage": "speaker (clause spoken)", "start": clause.source_start - ref, "end": end - ref}]
    picks = (
        ("vad", [r for r in log.for_stage("vad") if r.media_out >= end - 0.03]),
        ("asr (commit)", [r for r in log.for_stage("asr") if r.media_out >= end - _EPS]),
        ("clauses", [r for r in log.for_stage("clauses") if abs(r.media_out - end) < _EPS]),
        ("mt", [r for r in log.for_stage("mt") if abs(r.media_in - clause.source_start) < _EPS]),
        ("tts (first chunk)", [r for r in log.for_stage("tts") if abs(r.media_in - clause.source_start) < _EPS]),
        ("vc (first chunk)", [r for r in log.records if r.stage in ("vc", "vc:passthrough")]),
    )
    for stage, records in picks:
        if (b := bar(stage, records)) is not None:
            bars.append(b)
    if clause.output_start is not None and clause.output_end is not None:
        bars.append({"stage": "listener (translation plays)", "start": clause.output_start - ref,
                     "end": clause.output_end - ref})  # fmt: skip
    return bars


def offline_block(engine: Any, samples: np.ndarray, rate: int, target: str, convert: bool) -> dict[str, float]:
    """The baseline: whole recording -> Whisper -> MT of the whole text -> TTS of the whole text (-> VC)."""
    from rt_f2f.voice import SpeakerProfile, VoiceConverter

    m = engine.models
    times: dict[str, float] = {}
    start = time.perf_counter()
    asr = m.recogniser.transcribe(samples, language=engine.config.source)
    times["asr_s"] = time.perf_counter() - start
    t = time.perf_counter()
    translation = m.translator.translate([asr.text])[0]
    times["mt_s"] = time.perf_counter() - t
    t = time.perf_counter()
    audio = m.synthesizer.synthesize(translation, target)
    times["tts_s"] = time.perf_counter() - t
    if convert:
        t = time.perf_counter()
        profile = SpeakerProfile.from_audio(samples, rate, embedder=False)  # WORLD conversion needs no d-vector
        VoiceConverter().convert(audio, m.synthesizer.sample_rate, profile.stats)
        times["vc_s"] = time.perf_counter() - t
    times["compute_s"] = time.perf_counter() - start
    times["first_word_end"] = asr.words[0].end if asr.words else 0.0
    times["audio_s"] = audio.size / m.synthesizer.sample_rate
    times["words"] = len(asr.words)
    return times


def run(ctx: BenchContext) -> SuiteResult:
    if not SAMPLE.exists():
        return skipped("speech", f"{SAMPLE} is missing (it ships with the repository)")
    from rt_f2f.asr.window import FULL_WINDOW
    from rt_f2f.audio import read_audio
    from rt_f2f.errors import RtF2fError
    from rt_f2f.speech import INPUT_RATE, SpeechConfig, SpeechEngine, build_report, translate_recording

    samples = read_audio(SAMPLE, INPUT_RATE)
    if ctx.quick:
        samples = samples[: int(QUICK_SECONDS * INPUT_RATE)]
    config = SpeechConfig(source="en", target="pt")
    engine = SpeechEngine(config)
    try:
        engine.load()
    except RtF2fError as exc:
        return skipped("speech", f"{exc.message} ({exc.hint})")
    ctx.progress(f"  speech: live en->pt over {samples.size / INPUT_RATE:.1f} s of speech")
    t0 = time.perf_counter()  # models are loaded: translate_recording's own clock starts within a millisecond
    live = asyncio.run(translate_recording(engine, samples, realtime=True))
    report = build_report(live, config, str(SAMPLE))
    if not live.clauses:
        return SuiteResult("speech", status="failed", reason="the engine produced no translated clause")
    ctx.progress("  speech: live again, Whisper padded to 30 s per step")
    padded_config = replace(config, asr_window=FULL_WINDOW)
    padded = asyncio.run(translate_recording(SpeechEngine(padded_config, engine.models), samples, realtime=True))
    padded_report = build_report(padded, padded_config, str(SAMPLE))
    ctx.progress("  speech: offline baseline (whole file -> Whisper -> MT -> TTS -> VC)")
    base = offline_block(engine, samples, INPUT_RATE, config.target, config.voice_conversion)

    duration = samples.size / INPUT_RATE
    result = SuiteResult(
        "speech",
        settings={
            "input": SAMPLE.name,
            "seconds": duration,
            "pair": "en->pt",
            "mode": "realtime",
            "asr": config.asr_model,
            "asr window": config.asr_window.describe(),
            "tts": engine.models.synthesizer.describe(),
            "voice_conversion": report["voice_conversion"].get("chunks_converted", 0) > 0,
            "transcript": report["transcript"],
            "translation": report["translation"],
        },
    )
    spans = [c.ear_voice_span for c in live.clauses if c.ear_voice_span is not None]
    result.add_stats("ear-voice span (rt-f2f, live)", spans, "s")
    first = live.clauses[0]
    base_start = duration + base["compute_s"]  # whole file heard, then all the compute
    base_span = base_start - base["first_word_end"]
    result.add("first clause ear-voice span (rt-f2f, live)", first.ear_voice_span, "s", 1)
    result.add(
        "first words ear-voice span (offline block baseline)",
        base_span,
        "s",
        1,
        note="recording length + ASR + MT + TTS + VC of the whole block, minus the end of the first word",
    )
    result.add(
        "baseline / rt-f2f ear-voice span, first clause",
        base_span / first.ear_voice_span,
        "x",
        1,
        better="higher",
        note="how many times sooner the first translated words are heard live",
    )
    result.add(
        "baseline first-words span / rt-f2f span p50",
        base_span / float(np.median(spans)),
        "x",
        len(spans),
        better="higher",
    )
    padded_spans = [c.ear_voice_span for c in padded.clauses if c.ear_voice_span is not None]
    if padded_spans:
        result.add_stats("ear-voice span (live, Whisper padded to 30 s)", padded_spans, "s")
        result.add(
            "30 s padding / window ear-voice span p50",
            float(np.median(padded_spans) / np.median(spans)),
            "x",
            len(spans),
            better="higher",
            note="the same live run with Whisper padded to 30 s per step, over the default encoder window",
        )
    result.add(
        "asr real-time factor (Whisper padded to 30 s)",
        padded_report["real_time_factor"]["asr"],
        "compute s / audio s",
        padded_report["latency"]["asr"]["count"],
    )
    result.add("offline block compute (baseline)", base["compute_s"], "s", 1)
    for stage in ("asr", "mt", "tts", "vc"):
        if f"{stage}_s" in base:
            result.add(f"offline block {stage} compute (baseline)", base[f"{stage}_s"], "s", 1)
    latency = report["latency"]
    for stage in sorted(latency, key=lambda s: STAGE_ORDER.index(s) if s in STAGE_ORDER else len(STAGE_ORDER)):
        stats = latency[stage]
        result.add(
            f"{stage} real-time factor", report["real_time_factor"][stage], "compute s / audio s", stats["count"]
        )
        result.add(f"{stage} compute p50", stats["compute_p50_s"], "s", stats["count"])
    result.add("live run wall time", live.wall, "s", 1, note=f"for {duration:.1f} s of input paced at real time")
    result.series["cdf:speech ear-voice span (live)"] = spans
    result.series["waterfall"] = first_clause_waterfall(live, t0)
    return result


SUITE = Suite("speech", "speech engine live ear-voice span vs translating the recording as one block", run)
