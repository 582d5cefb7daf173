"""TTS suite: time to first audio when speech is streamed phrase by phrase (``Synthesizer.stream``, what the
engine does) against waiting for the whole text (``Synthesizer.synthesize``, the baseline), on the same
multi-sentence texts in the same run, for Piper (embedded English voice) and Kokoro (Portuguese).

A listener hears the translation start when its first audio exists, so the streamed figure is the time until the
first chunk is out and the baseline's is the time until all audio exists. The real-time factor (compute / audio
seconds) says whether a backend keeps up with speech at all.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks.common import BenchContext, Suite, SuiteResult, skipped

# several sentences each: streaming only helps when there is more than one phrase to voice
TEXTS = {
    "en": [
        "The meeting starts at nine tomorrow. Please bring the report and the new figures. "
        "We will go through them together before lunch.",
        "We tested the system on a small machine. The results were better than we expected, "
        "and the delay stayed low all afternoon.",
        "If the train is late again, I will take the bus. It is slower, but at least it comes. "
        "Call me when you get to the station.",
        "She opened the window and looked at the garden. The rain had stopped. She decided to stay at home.",
    ],
    "pt": [
        "Testámos o sistema numa máquina pequena. Os resultados foram bons.",
        "A reunião começa às nove horas amanhã, por isso traga o relatório. Vamos ver os números juntos.",
        "Se o comboio voltar a atrasar, apanho o autocarro. É mais lento, mas pelo menos chega.",
    ],
}

BACKENDS = (("piper", "en"), ("kokoro", "pt"))


def _measure(synth, text: str, language: str) -> dict[str, float]:
    """Time to the first streamed chunk, and time for the whole text at once (the baseline), of ``text``.

    The stream is closed after its first chunk: the rest is the same work the baseline does, whose time gives the
    real-time factor.
    """
    start = time.perf_counter()
    chunks = synth.stream(text, language)
    next(chunks)
    first_s = time.perf_counter() - start
    chunks.close()
    start = time.perf_counter()
    whole = synth.synthesize(text, language)
    whole_s = time.perf_counter() - start
    return {
        "first_s": first_s,
        "whole_s": whole_s,
        "audio_s": whole.size / synth.sample_rate,
        "phrases": len(synth.plan(text, language)),
    }


def run(ctx: BenchContext) -> SuiteResult:
    from rt_f2f.errors import RtF2fError
    from rt_f2f.tts import get_synthesizer

    result = SuiteResult("tts", settings={"quick": ctx.quick})
    measured = 0
    missing = []
    for backend, language in BACKENDS:
        try:
            synth = get_synthesizer(language, backend=backend)
        except RtF2fError as exc:
            missing.append(f"{backend}: {exc.message}")
            continue
        texts = TEXTS[language]
        if ctx.quick:
            texts = texts[: 2 if backend == "piper" else 1]
        synth.synthesize("Hello.", language)  # first call pays session set-up and phonemiser start-up
        rows = []
        for text in texts:
            ctx.progress(f"  tts {backend}: {text[:40]}...")
            rows.append(_measure(synth, text, language))
        first = [r["first_s"] for r in rows]
        whole = [r["whole_s"] for r in rows]
        label = f"{backend} ({language})"
        result.add_stats(f"{label} time to first audio, streamed", first, "s")
        result.add_stats(f"{label} time to all audio, whole text (baseline)", whole, "s")
        result.add(
            f"{label} baseline / streamed time to first audio (p50)",
            float(np.median(whole) / np.median(first)),
            "x",
            len(rows),
            better="higher",
            note="how many times sooner a listener hears speech when it is streamed per phrase",
        )
        compute = sum(r["whole_s"] for r in rows)
        audio = sum(r["audio_s"] for r in rows)
        result.add(f"{label} real-time factor", compute / audio, "compute s / audio s", len(rows))
        result.add(
            f"{label} phrases per text", float(np.mean([r["phrases"] for r in rows])), "phrases", len(rows), "none"
        )
        result.series[f"cdf:tts {label} first audio (streamed)"] = first
        result.series[f"cdf:tts {label} all audio (baseline)"] = whole
        result.settings[backend] = {"voice": synth.describe(), "texts": len(rows)}
        measured += 1
    if not measured:
        return skipped("tts", "no TTS backend could load: " + "; ".join(missing))
    if missing:
        result.settings["missing"] = missing
    return result


SUITE = Suite("tts", "TTS time to first audio: streamed per phrase vs whole text", run)
