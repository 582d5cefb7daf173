"""Streaming ASR suite: the LocalAgreement-2 policy against fixed 1-second chunking on the same English speech,
in the same run: commit latency (word audio end -> commit, live, compute included), word error rate, and
Whisper's cost per call."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.common import BenchContext, Suite, SuiteResult, skipped, wer

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


def librivox_clips() -> list[tuple[Path, str]]:
    """(wav, reference transcript) pairs from Debian's pocketsphinx-testdata."""
    listing = LIBRIVOX / "transcription"
    if not listing.exists():
        return []
    clips = []
    for line in listing.read_text().splitlines():
        text, _, ident = line.rpartition("(")
        text = text.replace("<s>", "").replace("</s>", "").strip()
        wav = LIBRIVOX / f"{ident.strip(' )')}.wav"
        if wav.exists():
            clips.append((wav, text))
    return clips


def run(ctx: BenchContext) -> SuiteResult:
    clips = librivox_clips()
    if not clips:
        return skipped("asr", f"no English test speech: install Debian pocketsphinx-testdata ({LIBRIVOX})")
    from rt_f2f.asr.policy import FixedChunkPolicy, LocalAgreementPolicy, replay
    from rt_f2f.asr.whisper import load_whisper
    from rt_f2f.audio import read_audio

    if ctx.quick:
        clips = clips[:2]
    asr = load_whisper("whisper-base")

    def transcribe(audio: np.ndarray, offset: float, prompt: str):
        return list(asr.transcribe(audio, language="en", prompt=prompt, offset=offset).words)

    result = SuiteResult("asr", settings={"model": "whisper-base int8", "chunk_s": 0.5, "clips": len(clips)})
    for label, factory in (("local-agreement-2", LocalAgreementPolicy), ("fixed-1s (baseline)", FixedChunkPolicy)):
        latencies, errors, compute = [], [], []
        for wav, reference in clips:
            ctx.progress(f"  asr {label}: {wav.name}")
            audio = read_audio(wav, 16000)
            outcome = replay(factory(transcribe), audio, chunk_s=0.5)
            latencies += [c.committed_at - c.word.end for c in outcome.commits]
            errors.append(wer(reference, outcome.text))
            compute += outcome.compute_s
        result.add_stats(f"{label} commit latency", latencies, "s")
        result.add(f"{label} WER", float(np.mean(errors)), "fraction", len(errors))
        result.add_stats(f"{label} whisper call", compute, "s")
        result.series[f"cdf:{label} commit latency"] = latencies
    figs = {f.name: f.value for f in result.figures}
    result.add(
        "fixed-1s / local-agreement WER ratio",
        figs["fixed-1s (baseline) WER"] / max(figs["local-agreement-2 WER"], 1e-3),
        "x",
        len(clips),
        better="higher",
        note="how many times more word errors the baseline makes",
    )
    result.add(
        "local-agreement / fixed-1s commit latency ratio (p50)",
        figs["local-agreement-2 commit latency p50"] / figs["fixed-1s (baseline) commit latency p50"],
        "x",
        len(clips),
        note="below 1: the policy commits sooner than the baseline",
    )
    return result


SUITE = Suite("asr", "streaming ASR policy vs fixed 1 s chunking", run)
