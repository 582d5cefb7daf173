"""Kokoro phrase latency beside a Whisper step loop, with and without the TTS-priority gate (critical.CriticalPath).

A variant of the lead's contention check (session 5): the ASR steps every ``--step`` seconds on a 5 s buffer, as the
live engine does; the TTS voices a short Portuguese phrase every 1.5-3 s (same seeded gaps in every mode), each
marked urgent. Modes: the TTS alone, beside the ungated ASR, beside an ASR that holds its steps while the TTS is
busy (polling every 20 ms, at most ``max_wait_s``). Prints the phrase times and what the ASR gave up.

    python -m benchmarks.tts_priority_contention --phrases 10
"""

from __future__ import annotations

import argparse
import os
import random
import threading
import time
from pathlib import Path

import numpy as np

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "en_sample.wav"
PHRASES = ("Ele não era", "um jovem muito", "bonito, mas tinha", "Bom dia a todos")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phrases", type=int, default=10, help="phrases voiced per mode")
    parser.add_argument("--step", type=float, default=1.0, help="seconds between ASR steps")
    args = parser.parse_args(argv)

    from rt_f2f.asr.whisper import load_whisper
    from rt_f2f.audio import read_audio
    from rt_f2f.critical import CriticalPath
    from rt_f2f.tts.kokoro import KokoroSynthesizer

    whisper = load_whisper("whisper-base")
    tts = KokoroSynthesizer()
    audio = read_audio(SAMPLE, 16000)[: 16000 * 5]
    tts.synthesize_phrase(PHRASES[0], "pt")  # warm-up
    whisper.transcribe(audio, language="en")

    def run(mode: str) -> dict[str, float]:
        gate = CriticalPath()
        stop = threading.Event()
        asr_steps: list[float] = []
        asr_late: list[float] = []

        def asr_loop() -> None:
            due = time.perf_counter()
            while not stop.is_set():
                if (pause := due - time.perf_counter()) > 0:
                    time.sleep(pause)
                if mode == "gated":
                    while not stop.is_set() and gate.hold_step(time.perf_counter()):
                        time.sleep(0.02)
                started = time.perf_counter()
                asr_late.append(started - due)
                whisper.transcribe(audio, language="en")
                asr_steps.append(time.perf_counter() - started)
                due = max(due + args.step, time.perf_counter())

        thread = threading.Thread(target=asr_loop, daemon=True)
        if mode != "alone":
            thread.start()
        rng = random.Random(7)
        times = []
        for i in range(args.phrases):
            time.sleep(rng.uniform(1.5, 3.0))
            started = time.perf_counter()
            with gate.urgent():
                tts.synthesize_phrase(PHRASES[i % len(PHRASES)], "pt")
            times.append(time.perf_counter() - started)
        stop.set()
        if mode != "alone":
            thread.join()
        return {
            "phrase_p50": float(np.median(times)),
            "phrase_p90": float(np.percentile(times, 90)),
            "asr_steps": len(asr_steps),
            "asr_step_p50": float(np.median(asr_steps)) if asr_steps else float("nan"),
            "asr_late_p50": float(np.median(asr_late)) if asr_late else float("nan"),
            "held": gate.steps_deferred,
            "waited_s": gate.waited_s,
        }

    print(f"load {os.getloadavg()[0]:.2f}; {args.phrases} phrases per mode, ASR step every {args.step} s")
    print("mode | phrase p50 | phrase p90 | ASR steps | ASR step p50 | ASR start late p50 | held | waited")
    for mode in ("alone", "ungated", "gated", "ungated", "gated"):
        r = run(mode)
        print(
            f"{mode} | {r['phrase_p50']:.3f} s | {r['phrase_p90']:.3f} s | {r['asr_steps']} | "
            f"{r['asr_step_p50']:.3f} s | {r['asr_late_p50']:.3f} s | {r['held']} | {r['waited_s']:.1f} s "
            f"(load {os.getloadavg()[0]:.2f})",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
