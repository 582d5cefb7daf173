"""Streaming ASR suite, all on the same English speech in the same run:

- LocalAgreement-2 with the streaming encoder window (the default: the buffer padded to a few seconds) against the
  same policy with Whisper's 30 s padding (the old default): Whisper's cost per call, real-time factor (compute
  seconds per second of speech), commit latency and word error rate, as ratios;
- LocalAgreement-2 against fixed 1-second chunking (the naive baseline, same window): word error rate and commit
  latency.

Commit latency is word audio end -> commit, live: a step waits for the previous one, so compute is included
(computation-aware). The three runs take turns clip by clip, so machine load falls on all of them alike. The full
mode also replays every clip with compute taken as free (computation-unaware), so the word error rates compare
the windows alone rather than how many steps a busy machine let through.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.common import BenchContext, Suite, SuiteResult, skipped, wer
from rt_f2f.rates import ENGINE_RATE

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
CHUNK_S = 0.5  # audio arrives in half-second pieces, as from the VAD
STREAMING = "local-agreement-2"
FULL = "local-agreement-2, 30 s padding (baseline)"
FIXED = "fixed-1s (baseline)"


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


class Tally:
    """What one policy setting did over all clips."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.heard: list[float] = []  # commit latency without compute: when the committing step's audio ended
        self.errors: list[float] = []
        self.unaware_errors: list[float] = []
        self.calls: list[float] = []
        self.audio_s = 0.0

    @property
    def rtf(self) -> float:
        return sum(self.calls) / self.audio_s

    def report(self, result: SuiteResult, label: str) -> None:
        result.add_stats(f"{label} commit latency", self.latencies, "s")
        result.add(f"{label} commit latency p50, compute excluded", float(np.median(self.heard)), "s", len(self.heard))
        result.add(f"{label} WER", float(np.mean(self.errors)), "fraction", len(self.errors))
        if self.unaware_errors:
            result.add(
                f"{label} WER, computation-unaware",
                float(np.mean(self.unaware_errors)),
                "fraction",
                len(self.unaware_errors),
                note="a step at every second of audio, as if compute were free: the window's effect alone",
            )
        result.add_stats(f"{label} whisper call", self.calls, "s")
        result.add(f"{label} real-time factor", self.rtf, "compute s / audio s", len(self.calls))
        result.series[f"cdf:{label} commit latency"] = self.latencies


def run(ctx: BenchContext) -> SuiteResult:
    clips = librivox_clips()
    if not clips:
        return skipped("asr", f"no English test speech: install Debian pocketsphinx-testdata ({LIBRIVOX})")
    from rt_f2f.asr.policy import FixedChunkPolicy, LocalAgreementPolicy, StreamingPolicy, TranscribeFn
    from rt_f2f.asr.replay import replay
    from rt_f2f.asr.whisper import load_whisper
    from rt_f2f.asr.window import FULL_WINDOW, STREAMING_WINDOW, EncoderWindow
    from rt_f2f.audio import read_audio

    if ctx.quick:
        clips = clips[:2]
    asr = load_whisper("whisper-base")

    def transcribe(window: EncoderWindow) -> TranscribeFn:
        def call(audio: np.ndarray, offset: float, prompt: str):
            return list(asr.transcribe(audio, language="en", prompt=prompt, offset=offset, window=window).words)

        return call

    runs: dict[str, Callable[[], StreamingPolicy]] = {
        STREAMING: lambda: LocalAgreementPolicy(transcribe(STREAMING_WINDOW)),
        FULL: lambda: LocalAgreementPolicy(transcribe(FULL_WINDOW)),
        FIXED: lambda: FixedChunkPolicy(transcribe(STREAMING_WINDOW)),
    }
    tallies = {label: Tally() for label in runs}
    asr.transcribe(read_audio(clips[0][0], ENGINE_RATE), language="en")  # the first call pays one-time set-up costs
    for i, (wav, reference) in enumerate(clips):
        audio = read_audio(wav, ENGINE_RATE)
        order = list(runs) if i % 2 == 0 else list(reversed(runs))  # neither setting always runs first
        for label in order:
            ctx.progress(f"  asr {label}: {wav.name}")
            outcome = replay(runs[label](), audio, chunk_s=CHUNK_S)
            tally = tallies[label]
            tally.latencies += [c.committed_at - c.word.end for c in outcome.commits]
            tally.heard += [c.heard_at - c.word.end for c in outcome.commits]
            tally.errors.append(wer(reference, outcome.text))
            tally.calls += outcome.compute_s
            tally.audio_s += audio.size / ENGINE_RATE
            if not ctx.quick and label != FIXED:
                free = replay(runs[label](), audio, chunk_s=CHUNK_S, computation_aware=False)
                tally.unaware_errors.append(wer(reference, free.text))

    result = SuiteResult(
        "asr",
        settings={
            "model": "whisper-base int8",
            "chunk_s": CHUNK_S,
            "clips": len(clips),
            "window": STREAMING_WINDOW.describe(),
            "baseline window": FULL_WINDOW.describe(),
        },
    )
    for label, tally in tallies.items():
        tally.report(result, label)
    new, old, fixed = tallies[STREAMING], tallies[FULL], tallies[FIXED]
    n = len(clips)
    result.add(
        "30 s padding / window whisper call ratio (p50)",
        float(np.median(old.calls) / np.median(new.calls)),
        "x",
        n,
        better="higher",
        note="how many times more a LocalAgreement-2 step costs when Whisper pads to 30 s",
    )
    result.add("30 s padding / window real-time factor ratio", old.rtf / new.rtf, "x", n, better="higher")
    result.add(
        "window / 30 s padding commit latency ratio (p50)",
        float(np.median(new.latencies) / np.median(old.latencies)),
        "x",
        n,
        note="below 1: the window commits sooner",
    )
    result.add(
        "window - 30 s padding WER",
        float(np.mean(new.errors) - np.mean(old.errors)),
        "fraction",
        n,
        note="word errors the window adds (negative: it makes fewer)",
    )
    result.add(
        "window / 30 s padding WER ratio",
        float(np.mean(new.errors) / max(np.mean(old.errors), 1e-3)),
        "x",
        n,
        note="1: as accurate as 30 s padding",
    )
    result.add(
        "fixed-1s / local-agreement WER ratio",
        float(np.mean(fixed.errors) / max(np.mean(new.errors), 1e-3)),
        "x",
        n,
        better="higher",
        note="how many times more word errors the baseline makes",
    )
    result.add(
        "local-agreement / fixed-1s commit latency ratio (p50)",
        float(np.median(new.latencies) / np.median(fixed.latencies)),
        "x",
        n,
        note="below 1: the policy commits sooner than the baseline",
    )
    return result


SUITE = Suite("asr", "streaming ASR: encoder window vs 30 s padding; LocalAgreement-2 vs fixed 1 s chunking", run)
