"""``rt-f2f speech``: translate a recording, speech in, translated speech in the speaker's voice out.

The command only: flags, the checks that run before minutes of work, and what it prints. The work is
``recording.translate_recording`` over ``speech.SpeechEngine``; both load inside ``run`` so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .asr.window import STREAMING_WINDOW, EncoderWindow
from .errors import MediaError
from .rates import ENGINE_RATE


def summary_lines(report: dict[str, Any], out: str, seconds: float, target: str) -> list[str]:
    """What the command prints. A fast run's figures come from a computation-unaware timeline (each clause placed
    at its source time), so they are labelled as such: read as live latency they would mislead, even go negative."""
    lines = [
        f"wrote {out} ({seconds:.1f} s of {target} speech)",
        f"transcript:  {report['transcript']}",
        f"translation: {report['translation']}",
    ]
    count = report["clause_count"]
    kept = f"clauses: {count['heard']} of {count['cut']} heard, {count['dropped']} dropped"
    if count["dropped"]:
        kept += (
            " (" + "; ".join(f"{c['source']!r} stopped after {c['reached']}" for c in count["dropped_clauses"]) + ")"
        )
    lines.append(kept)
    evs = report["ear_voice_span"]
    if not evs["n"]:
        return lines
    figures = f"ear-voice span p50 {evs['p50']:.2f} s, p95 {evs['p95']:.2f} s"
    if report["mode"] == "realtime":
        shares = report["waterfall"]["stage_share"]
        lines.append(f"{figures} (live)")
        lines.append("where it went (p50): " + ", ".join(f"{k} {v['p50']:.2f} s" for k, v in shares.items()))
    else:
        lines.append(
            f"{figures} (computation-unaware: each clause placed at its source time, so it can be negative; add "
            "--realtime for what a live listener gets)"
        )
    return lines


def run(args: argparse.Namespace) -> int:
    import asyncio

    from .audio import atomic_output, read_audio, write_json, write_wav
    from .clauses import ClauseConfig
    from .outputs import check_outputs
    from .recording import build_report, translate_recording
    from .speech import SpeechConfig, SpeechEngine

    check_outputs(("--out", args.out), ("--report", args.report))  # before minutes of work, not after
    config = SpeechConfig(
        source=args.source,
        target=args.target,
        asr_model=args.asr_model,
        asr_window=EncoderWindow.parse(args.asr_window),
        asr_policy=args.asr_policy,
        clauses=ClauseConfig.sentences() if args.clauses == "sentences" else ClauseConfig(),
        mt_model=args.mt_model,
        tts_backend=args.tts,
        voice_conversion=not args.no_voice_conversion,
    )
    samples = read_audio(args.input, ENGINE_RATE)
    if samples.size < ENGINE_RATE // 10:
        raise MediaError(f"{args.input}: shorter than 0.1 s", "give a recording with speech in it")
    engine = SpeechEngine(config)
    print(f"loading models for {config.source} -> {config.target} ...", file=sys.stderr)
    result = asyncio.run(
        translate_recording(engine, samples, args.realtime, on_progress=lambda m: print(m, file=sys.stderr))
    )
    if not result.clauses:
        raise MediaError(f"{args.input}: no speech was recognised", "check the recording and --source language")
    report = build_report(result, config, str(args.input))
    with atomic_output(args.out) as tmp:
        write_wav(tmp, result.audio, result.sample_rate)
    if args.report:
        write_json(args.report, report)
    seconds = result.audio.size / result.sample_rate
    print("\n".join(summary_lines(report, args.out, seconds, config.target)))
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("speech", help="translate a recording: speech in, translated speech in your voice out")
    p.add_argument("input", metavar="IN", help="audio or video file with speech")
    p.add_argument("--source", required=True, help="language spoken in IN (ISO 639-1, e.g. en)")
    p.add_argument("--target", required=True, help="language to speak (e.g. pt)")
    p.add_argument("--out", required=True, help="translated speech, WAV")
    p.add_argument("--report", help="JSON report: transcript, translation, per-clause times, per-stage latency")
    p.add_argument("--realtime", action="store_true", help="pace the input at real time (live latency figures)")
    p.add_argument("--asr-model", default="whisper-base", help="Whisper model name or CTranslate2 folder")
    p.add_argument(
        "--asr-window",
        default=STREAMING_WINDOW.describe(),
        metavar="SPEC",
        help="audio Whisper's encoder sees per streaming step: STEP,MIN,PAD seconds (the buffer plus PAD of "
        "silence, rounded up to a multiple of STEP, at least MIN; default %(default)s, ~3-4x cheaper than Whisper's "
        "30 s padding at the same word error rate), or 'full' to pad every step to 30 s",
    )
    p.add_argument(
        "--asr-policy",
        default="alignatt",
        choices=("alignatt", "local-agreement"),
        help="when heard words become final: alignatt (one Whisper pass per step, words well behind the end of the "
        "audio; default) or local-agreement (two passes must agree: ~0.4 s later)",
    )
    p.add_argument(
        "--clauses",
        default="phrases",
        choices=("phrases", "sentences"),
        help="translation units: phrases of up to 6 words (default, lowest delay) or whole clauses of up to 14 "
        "words (better translations, seconds more delay)",
    )
    p.add_argument("--mt-model", default=None, help="MT model name or CTranslate2 folder (default: by pair)")
    p.add_argument("--tts", default=None, help="TTS backend: piper, kokoro, mms or espeak (default: by language)")
    p.add_argument("--no-voice-conversion", action="store_true", help="keep the TTS voice")
    p.set_defaults(func=run)
