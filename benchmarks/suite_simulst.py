"""Simultaneous-translation metrics on the speech engine's output: ear-voice span, Average Lagging and LAAL from
word timestamps (computation-aware: paced at real time, compute included; computation-unaware: each clause spoken
the moment its source clause ends), with BLEU / chrF of the back-transcribed output beside them. Baseline in the
same run: consecutive translation (hear everything, then transcribe, translate and speak the whole)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.common import BenchContext, Suite, SuiteResult, skipped
from benchmarks.simulst import average_lagging, translation_quality
from rt_f2f.rates import ENGINE_RATE

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "en_sample.wav"
REFERENCE = REPO / "examples" / "en_sample.pt.txt"
CLIP_ENDS = (2.99, 8.29, 11.58)  # the sample's three LibriVox clips end here (seconds)


def _words(asr, audio: np.ndarray, rate: int) -> list:
    from rt_f2f.audio import resample

    return list(asr.transcribe(resample(audio, rate, ENGINE_RATE), language="pt").words)


def _metrics(result: SuiteResult, label: str, words: list, source_s: float, reference: str) -> None:
    delays = [w.start for w in words]
    ref_len = len(reference.split())
    if not delays:
        result.add(f"{label} words heard", 0, "words", 1)
        return
    text = " ".join(w.text.strip() for w in words)
    quality = translation_quality(text, reference)
    result.add(f"{label} AL", average_lagging(delays, source_s), "s", len(delays))
    result.add(f"{label} LAAL", average_lagging(delays, source_s, ref_len), "s", len(delays))
    result.add(f"{label} BLEU", quality["bleu"], "BLEU", 1, better="higher", note="back-transcribed by whisper-base")
    result.add(f"{label} chrF", quality["chrf"], "chrF", 1, better="higher")
    result.series[f"cdf:{label} word delay"] = delays


def _unaware_timeline(run, realtime_rate: int) -> np.ndarray:
    """Re-place each clause's audio at the moment its source clause ended (compute taken as free)."""
    cursor, pieces = 0.0, []
    for rec in run.clauses:
        a, b = int(rec.output_start * realtime_rate), int(rec.output_end * realtime_rate)
        clip = run.audio[a:b]
        start = max(rec.source_end, cursor)
        pieces.append((start, clip))
        cursor = start + clip.size / realtime_rate
    out = np.zeros(int(cursor * realtime_rate) + 1, np.float32)
    for start, clip in pieces:
        i = int(start * realtime_rate)
        out[i : i + clip.size] += clip
    return out


def run(ctx: BenchContext) -> SuiteResult:
    if not SAMPLE.exists() or not REFERENCE.exists():
        return skipped("simulst", f"missing {SAMPLE} or {REFERENCE}")
    from rt_f2f.asr.whisper import load_whisper
    from rt_f2f.audio import read_audio
    from rt_f2f.mt import get_translator
    from rt_f2f.recording import translate_recording
    from rt_f2f.speech import SpeechConfig, SpeechEngine
    from rt_f2f.tts import get_synthesizer

    clips = 2 if ctx.quick else 3
    source_s = CLIP_ENDS[clips - 1]
    samples = read_audio(SAMPLE, ENGINE_RATE)[: int(source_s * ENGINE_RATE)]
    reference = " ".join(REFERENCE.read_text().splitlines()[:clips])
    result = SuiteResult("simulst", settings={"pair": "en->pt", "source_s": source_s, "reference": str(REFERENCE)})
    asr = load_whisper("whisper-base")

    ctx.progress("  simulst: rt-f2f paced at real time (computation-aware)")
    engine = SpeechEngine(SpeechConfig("en", "pt", voice_conversion=False))
    live = asyncio.run(translate_recording(engine, samples, realtime=True))
    evs = [r.ear_voice_span for r in live.clauses if r.ear_voice_span is not None]
    result.add_stats("rt-f2f ear-voice span", evs, "s")
    _metrics(result, "rt-f2f computation-aware", _words(asr, live.audio, live.sample_rate), source_s, reference)
    unaware = _unaware_timeline(live, live.sample_rate)
    _metrics(result, "rt-f2f computation-unaware", _words(asr, unaware, live.sample_rate), source_s, reference)

    ctx.progress("  simulst: consecutive baseline (whole recording, then translate and speak)")
    translator, tts = get_translator("en", "pt"), get_synthesizer("pt")
    start = time.perf_counter()
    text = asr.transcribe(samples, language="en").text
    spoken = tts.synthesize(translator.translate([text])[0], "pt")
    compute = time.perf_counter() - start
    # the baseline starts speaking once it heard everything and finished computing
    words = [replace(w, start=w.start + source_s + compute) for w in _words(asr, spoken, tts.sample_rate)]
    _metrics(result, "consecutive baseline", words, source_s, reference)
    figs = {f.name: f.value for f in result.figures}
    if "consecutive baseline LAAL" in figs and "rt-f2f computation-aware LAAL" in figs:
        result.add(
            "baseline / rt-f2f LAAL ratio",
            figs["consecutive baseline LAAL"] / max(figs["rt-f2f computation-aware LAAL"], 1e-3),
            "x",
            1,
            better="higher",
            note="how many times longer listeners wait with consecutive translation",
        )
    return result


SUITE = Suite("simulst", "AL / LAAL / ear-voice span with BLEU and chrF, vs consecutive translation", run)
