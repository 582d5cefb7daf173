"""``rt-f2f translate``: a recorded talking video through the real-time face-to-face pipeline.

Writes the translated, lip-synced MP4 (H.264 + AAC), WebVTT captions beside it (``OUT.vtt`` in the target
language, ``OUT.<source>.vtt`` in the source language, both on the output clock), and a JSON report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import MediaError
from .lipsync.names import add_backend_argument
from .rates import ENGINE_RATE

if TYPE_CHECKING:  # numpy and the pipeline load inside the functions: ``rt-f2f translate --help`` stays instant
    import numpy as np

    from .av.config import FaceToFaceResult
    from .frames import Caption
    from .lipsync.stream import LipSyncStream
    from .speech import SpeechEngine


def mux_audio(video_only: Path, audio: np.ndarray, rate: int, out: Path) -> None:
    """Copy the H.264 stream of ``video_only`` and add ``audio`` as AAC: one file, no re-encoding of video."""
    from fractions import Fraction

    import av
    import numpy as np

    with av.open(str(video_only)) as src, av.open(str(out), "w", format="mp4") as dst:
        vin = src.streams.video[0]
        vout = dst.add_stream_from_template(vin)
        aout = dst.add_stream("aac", rate=rate)
        aout.layout = "mono"
        for packet in src.demux(vin):
            if packet.dts is None:
                continue
            packet.stream = vout
            dst.mux(packet)
        step = rate  # one second per frame
        for start in range(0, audio.size, step):
            frame = av.AudioFrame.from_ndarray(
                np.clip(audio[start : start + step], -1, 1).astype(np.float32)[None, :], format="flt", layout="mono"
            )
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            for packet in aout.encode(frame):
                dst.mux(packet)
        for packet in aout.encode(None):
            dst.mux(packet)


def _vtt_time(t: float) -> str:
    t = max(0.0, t)
    h, rem = divmod(t, 3600)
    m, s = divmod(rem, 60)
    return f"{int(h):02d}:{int(m):02d}:{s:06.3f}"


def write_vtt(path: Path, cues: list[tuple[float, float, str]]) -> None:
    from .audio import atomic_output

    lines = ["WEBVTT", ""]
    for i, (start, end, text) in enumerate(sorted(cues), 1):
        lines += [str(i), f"{_vtt_time(start)} --> {_vtt_time(max(end, start + 0.5))}", text.strip(), ""]
    with atomic_output(path) as tmp:
        tmp.write_text("\n".join(lines), encoding="utf-8")


def caption_cues(result: FaceToFaceResult, delay: float) -> tuple[list, list]:
    """Cues in the output file's time, whose 0 is output pts D (the first output moment).

    Translation cues span their clause's output audio; source cues sit where their words are seen (source time).
    """
    timings = result.scheduler.metrics().clauses if result.scheduler else []
    translated, source = [], []
    for cap in (c for c in result.captions if c.final):
        if cap.kind == "source":
            source.append((cap.start, cap.end, cap.text))
            continue
        match = min(timings, key=lambda t: abs(t.source_start - cap.start), default=None)
        if match is not None and abs(match.source_start - cap.start) < 0.05:
            translated.append((match.start_out - delay, match.end_out - delay, cap.text))
    return translated, source


def build_report(
    result: FaceToFaceResult, engine: SpeechEngine, args: argparse.Namespace, lipsync: dict[str, Any]
) -> dict[str, Any]:
    import numpy as np

    from .av.config import ear_voice_spans

    metrics = result.scheduler.metrics()
    summary = metrics.summary()
    evs = ear_voice_spans(result)
    delays = metrics.delay_series()
    captions: list[Caption] = result.captions
    return {
        "input": str(args.input),
        "output": str(args.outfile),
        "source": args.source,
        "target": args.target,
        "mode": "realtime" if args.realtime else "fast (computation-unaware: speech arrives when its clause ends)",
        "delay_s": args.delay,
        "max_delay_s": args.max_delay,
        "wall_seconds": result.wall_seconds,
        "transcript": " ".join(c.text for c in captions if c.final and c.kind == "source"),
        "translation": " ".join(c.text for c in captions if c.final and c.kind == "translation"),
        "captions": [
            {"kind": c.kind, "language": c.language, "start": c.start, "end": c.end, "final": c.final, "text": c.text}
            for c in captions
        ],
        "ear_voice_span": {
            "p50": float(np.percentile(evs, 50)) if evs else None,
            "p95": float(np.percentile(evs, 95)) if evs else None,
            "n": len(evs),
        },
        "output_delay": {
            "max_s": max((d for _, d in delays), default=None),
            "over_time": [{"output_pts": t, "delay_s": d} for t, d in delays],
        },
        "scheduler": summary,
        "decisions": [
            {
                "kind": str(d.kind),
                "clause_id": d.clause_id,
                "at": d.at,
                "delay": d.delay,
                "rate": d.rate,
                "reason": d.reason,
            }
            for d in metrics.decisions
        ],  # fmt: skip
        "video": {
            "frames_written": result.frames_written,
            "frames_repeated": summary["video_repeated"],
            "frames_dropped": summary["video_dropped"],
        },
        "lipsync": lipsync
        | {
            "frames_rendered": result.lipsync_rendered,
            "frames_without_face": result.lipsync_without_face,
            "frames_skipped_behind": result.lipsync_skipped_behind,
            "render_lag_p95_s": float(np.percentile(result.render_lag, 95)) if result.render_lag else None,
        },
        "latency": engine.log.summary(),
    }


def _load_lipsync(args: argparse.Namespace, fps: float) -> tuple[LipSyncStream | None, dict[str, Any]]:
    if not args.checkpoint_path:
        return None, {"enabled": False, "reason": "no --checkpoint_path: the delayed video passes through unchanged"}
    from .lipsync.backends import default_backend, load_backend
    from .lipsync.stream import LipSyncStream

    backend_name = args.backend or default_backend(args.checkpoint_path)  # LipGAN (.h5) runs on torch only
    backend = load_backend(backend_name, args.checkpoint_path)
    stream = LipSyncStream(backend, fps=fps, batch_size=args.lipsync_batch, max_latency_s=0.5)
    return stream, {"enabled": True, "backend": backend_name, "checkpoint": str(args.checkpoint_path)}


def run(args: argparse.Namespace) -> int:
    import asyncio
    import tempfile

    from .audio import atomic_output, read_audio, write_json
    from .av.config import OUTPUT_RATE, FaceToFaceConfig
    from .av.facetoface import FaceToFace
    from .errors import RtF2fError
    from .outputs import check_outputs
    from .speech import SpeechConfig, SpeechEngine
    from .video import VideoWriter, probe_video, read_frames

    if args.drop_after is not None and not args.realtime:
        raise MediaError(
            "--drop-after is a live policy: a recorded file never loses speech",
            "add --realtime to simulate a live session, or leave --drop-after out",
        )
    if args.lipsync_batch < 1:
        raise RtF2fError(f"--lipsync-batch must be at least 1, got {args.lipsync_batch}", "the default is 8")
    check_outputs(("--outfile", args.outfile), ("--report", args.report))
    config = SpeechConfig(source=args.source, target=args.target, mt_model=args.mt_model, tts_backend=args.tts)
    info = probe_video(args.input)
    if info.is_image:
        raise MediaError(f"{args.input}: a still image has no speech", "mux speech into a video first, or use lipsync")
    if not info.has_audio:
        raise MediaError(f"{args.input}: has no audio track", "give a talking video with its sound")
    samples = read_audio(args.input, ENGINE_RATE)
    lipsync, lipsync_info = _load_lipsync(args, info.fps)
    if lipsync is None:
        print(f"rt-f2f: {lipsync_info['reason']}", file=sys.stderr)
    engine = SpeechEngine(config)
    pipeline = FaceToFace(
        engine,
        FaceToFaceConfig(delay=args.delay, max_delay=args.max_delay, drop_after=args.drop_after, fps=info.fps,
                         realtime=args.realtime, lipsync_batch=args.lipsync_batch),
    lipsync)  # fmt: skip
    out = Path(args.outfile)
    print(f"translating {args.input} ({info.duration:.1f} s, {config.source} -> {config.target}) ...", file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".rt-f2f-", dir=out.parent) as work:
        video_only = Path(work) / "video.mp4"
        with VideoWriter(video_only, info.fps) as writer:
            result = asyncio.run(pipeline.run(samples, read_frames(args.input), writer.write))
        with atomic_output(out) as tmp:
            mux_audio(video_only, result.audio_samples, OUTPUT_RATE, tmp)
    translated, source = caption_cues(result, args.delay)
    write_vtt(out.with_suffix(".vtt"), translated)
    write_vtt(out.with_suffix(f".{config.source}.vtt"), source)
    report = build_report(result, engine, args, lipsync_info)
    if args.report:
        write_json(args.report, report)
    evs = report["ear_voice_span"]
    print(f"wrote {out} ({result.frames_written} frames), {out.with_suffix('.vtt')}")
    print(f"translation: {report['translation']}")
    if evs["n"]:
        live = "live" if args.realtime else "computation-unaware: speech placed when its clause ends; add --realtime"
        print(
            f"ear-voice span p50 {evs['p50']:.2f} s; output delay max {report['output_delay']['max_s']:.2f} s ({live})"
        )
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("translate", help="translate a talking video: lip-synced video, speech and captions")
    p.add_argument("input", metavar="INPUT", help="talking video with sound (mp4, webm, mov ...)")
    p.add_argument("--source", required=True, help="language spoken (ISO 639-1)")
    p.add_argument("--target", required=True, help="language to speak")
    p.add_argument("--outfile", required=True, help="output MP4")
    p.add_argument(
        "--checkpoint_path",
        help="Wav2Lip checkpoint (.pth) or LipGAN weights (.h5, recognised); without it the video passes through",
    )
    add_backend_argument(p, "--backend")
    p.add_argument("--lipsync-batch", type=int, default=8, help="frames per generator call")
    p.add_argument("--delay", type=float, default=2.0, help="target delay D in seconds (default 2.0)")
    p.add_argument(
        "--max-delay",
        type=float,
        default=4.0,
        help="D_max in seconds (default 4.0): speech later than this is played faster (up to 1.25x); nothing is "
        "dropped, the output is extended instead (the last frame held) so every sentence is heard",
    )
    p.add_argument(
        "--drop-after",
        type=float,
        default=None,
        metavar="S",
        help="live policy (with --realtime only): drop a clause whose speech would start more than S seconds after "
        "its source (S >= --max-delay); every drop is reported. Default: keep every clause",
    )
    p.add_argument("--report", help="JSON report: ear-voice span, delay over time, A/V offset, decisions")
    p.add_argument("--realtime", action="store_true", help="pace the input at real time")
    p.add_argument("--mt-model", default=None, help="MT model name or CTranslate2 folder")
    p.add_argument("--tts", default=None, help="TTS backend: piper, kokoro or espeak")
    p.set_defaults(func=run)
