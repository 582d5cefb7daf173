"""Speech suite: the speech engine live (English in, Portuguese out, input paced at real time, voice conversion on)
against the engine as it was before the real-time work, and against translating the recording offline as one
block, all in the same run.

rt-f2f's figure is the ear-voice span: from the end of a clause's first source word to the moment its translated
audio starts for a listener who hears each clause once it exists and the one before it has ended (the engine's own
report). "Today's engine" is the previous default in the same run: LocalAgreement-2 (two agreeing Whisper passes
per commit), sentence-level clauses of up to 14 words, the TTS at its own rate with whole phrases. The offline
baseline hears the whole recording, then transcribes it with Whisper, translates the whole text, synthesises the
whole translation and converts its voice: its translated audio can start only after the recording ended plus all
that compute. Every clause's time is split into stages (speaking, ASR commit, MT, TTS first audio, voice
conversion, queueing) by ``rt_f2f.waterfall``; the plots draw every clause and the median one.
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


def todays_engine(config: Any) -> Any:
    """The engine as it was before the real-time work, for the same-run baseline."""
    from rt_f2f.clauses import ClauseConfig

    return replace(
        config,
        asr_policy="local-agreement",
        clauses=ClauseConfig.sentences(),
        tts_max_speed=1.0,
        tts_first_phrase_words=None,
        pause_commit=False,
        tts_priority=False,
    )


def run(ctx: BenchContext) -> SuiteResult:
    if not SAMPLE.exists():
        return skipped("speech", f"{SAMPLE} is missing (it ships with the repository)")
    from rt_f2f.audio import read_audio
    from rt_f2f.errors import RtF2fError
    from rt_f2f.rates import ENGINE_RATE
    from rt_f2f.recording import build_report, translate_recording
    from rt_f2f.speech import SpeechConfig, SpeechEngine
    from rt_f2f.waterfall import bars, stage_shares

    samples = read_audio(SAMPLE, ENGINE_RATE)
    if ctx.quick:
        samples = samples[: int(QUICK_SECONDS * ENGINE_RATE)]
    config = SpeechConfig(source="en", target="pt")
    engine = SpeechEngine(config)
    try:
        engine.load()
    except RtF2fError as exc:
        return skipped("speech", f"{exc.message} ({exc.hint})")
    old_config = todays_engine(config)
    runs = {}
    # the two live runs take turns so machine load falls on both alike; a warm-up pays one-time costs first
    asyncio.run(translate_recording(SpeechEngine(config, engine.models), samples[: ENGINE_RATE * 2], realtime=False))
    for label, cfg in (("rt-f2f", config), ("today's engine", old_config)):
        ctx.progress(f"  speech: live en->pt over {samples.size / ENGINE_RATE:.1f} s of speech ({label})")
        live = asyncio.run(translate_recording(SpeechEngine(cfg, engine.models), samples, realtime=True))
        runs[label] = (live, build_report(live, cfg, str(SAMPLE)))
    live, report = runs["rt-f2f"]
    old, old_report = runs["today's engine"]
    if not live.clauses:
        return SuiteResult("speech", status="failed", reason="the engine produced no translated clause")
    ctx.progress("  speech: offline baseline (whole file -> Whisper -> MT -> TTS -> VC)")
    base = offline_block(engine, samples, ENGINE_RATE, config.target, config.voice_conversion)

    duration = samples.size / ENGINE_RATE
    result = SuiteResult(
        "speech",
        settings={
            "input": SAMPLE.name,
            "seconds": duration,
            "pair": "en->pt",
            "mode": "realtime",
            "asr": f"{config.asr_model}, {config.asr_policy} every {config.asr_step_s} s",
            "asr window": config.asr_window.describe(),
            "clauses": f"up to {config.clauses.max_words} words",
            "tts": engine.models.synthesizer.describe(),
            "tts max speed": config.tts_max_speed,
            "voice_conversion": report["voice_conversion"].get("chunks_converted", 0) > 0,
            "transcript": report["transcript"],
            "translation": report["translation"],
            "today's engine": "local-agreement-2, sentence clauses (14 words), TTS at its own rate, whole phrases",
            "today's engine translation": old_report["translation"],
        },
    )
    spans = [c.ear_voice_span for c in live.clauses if c.ear_voice_span is not None]
    old_spans = [c.ear_voice_span for c in old.clauses if c.ear_voice_span is not None]
    result.add_stats("ear-voice span (rt-f2f, live)", spans, "s")
    result.add_stats("ear-voice span (today's engine, live)", old_spans, "s")
    if spans and old_spans:
        result.add(
            "today's engine / rt-f2f ear-voice span p50",
            float(np.median(old_spans) / np.median(spans)),
            "x",
            len(spans),
            better="higher",
            note="the same recording through the previous defaults in the same run",
        )
        result.add(
            "today's engine / rt-f2f ear-voice span p95",
            float(np.percentile(old_spans, 95) / np.percentile(spans, 95)),
            "x",
            len(spans),
            better="higher",
        )
    reference = SAMPLE.with_suffix(".pt.txt")
    for label, (run_, rep) in runs.items():
        if reference.exists() and not ctx.quick:  # the quick run hears only the first 6 s
            from benchmarks.simulst import translation_quality

            quality = translation_quality(rep["translation"].lower(), " ".join(reference.read_text().split()))
            result.add(
                f"translation chrF ({label})",
                quality["chrf"],
                "chrF",
                1,
                better="higher",
                note="against examples/en_sample.pt.txt: what phrase-level chunking costs the translation",
            )
        result.add(f"clauses ({label})", len(run_.clauses), "clauses", 1, better="none")
        result.add(
            f"words translated ({label})",
            sum(len(c.source_text.split()) for c in run_.clauses),
            "words",
            1,
            better="higher",
            note="every committed word reaches the listener: nothing is dropped",
        )
        for stage, share in stage_shares(run_.waterfall).items():
            result.add(f"{stage} p50 ({label})", share["p50"], "s", share["n"])
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
    result.series["cdf:speech ear-voice span (today's engine, live)"] = old_spans
    rows = [r for r in live.waterfall if r.ear_voice_span is not None]
    if rows:
        median = sorted(rows, key=lambda r: r.ear_voice_span)[len(rows) // 2]
        result.series["waterfall"] = bars(median)
        result.series["clause_waterfall"] = {
            label: [{"clause": r.text, "bars": bars(r)} for r in run_.waterfall if r.ear_voice_span is not None]
            for label, (run_, _) in runs.items()
        }
    return result


SUITE = Suite(
    "speech", "speech engine live ear-voice span vs today's engine and vs translating the recording as one block", run
)
