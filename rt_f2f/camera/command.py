"""``rt-f2f camera``: be seen and heard in another language in any call app.

Opens the input first and the outputs next (so a missing camera or virtual device fails in a second, before any
model loads), then loads the models and runs a ``CameraSession``. Whatever happens, what this command created is
removed on the way out: the virtual microphone's PulseAudio modules are unloaded and half-written files deleted.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import sys
from typing import Any

from ..errors import RtF2fError
from ..lipsync.names import add_backend_argument

DEFAULT_VIRTUAL_MIC = {"Darwin": "BlackHole 2ch", "Windows": "CABLE Input"}


def _check_args(args: argparse.Namespace) -> None:
    if not (args.source and args.target):
        raise RtF2fError("--source and --target are required", "e.g. rt-f2f camera --source en --target pt")
    if args.duration is not None and not 0 < args.duration <= 24 * 3600:
        raise RtF2fError(f"--duration {args.duration} is out of range", "give seconds of output, e.g. --duration 20")
    if not 0.5 <= args.delay <= 30:
        raise RtF2fError(f"--delay {args.delay} is out of range", "the target delay is usually 2 s")
    if args.max_delay < args.delay:
        raise RtF2fError(f"--max-delay {args.max_delay} is below --delay {args.delay}", "set --max-delay >= --delay")


async def run_camera(args: argparse.Namespace, engine: Any | None = None) -> dict[str, Any]:
    """Everything ``rt-f2f camera`` does, returning the report; ``engine`` replaces the speech engine (tests)."""
    import asyncio  # here, not at the top: ``rt-f2f camera --help`` imports nothing it does not need

    from ..av.config import OUTPUT_RATE
    from ..speech import SpeechConfig, SpeechEngine
    from .audio_out import DeviceAudioSink, WavSink, open_device_sink
    from .inputs import CaptureInput, FileLoopInput
    from .session import OUTPUT_FPS, CameraConfig, CameraSession, build_report, print_status
    from .video_out import VirtualCameraSink, Y4MSink

    _check_args(args)
    speech_config = SpeechConfig(source=args.source, target=args.target, mt_model=args.mt_model, tts_backend=args.tts)
    created: list[str] = []
    video_sinks: list = []
    audio_sinks: list = []
    ok = False
    with contextlib.ExitStack() as cleanup:
        try:
            if args.input:
                media = FileLoopInput(args.input)
            else:
                media = CaptureInput(args.camera, args.microphone, camera_input=args.camera_format)
            cleanup.callback(media.close)
            size = (media.width, media.height)
            if args.y4m:
                video_sinks.append(Y4MSink(args.y4m, *size, OUTPUT_FPS))
            else:
                video_sinks.append(VirtualCameraSink(args.virtual_camera, *size, OUTPUT_FPS))
            if args.wav:
                audio_sinks.append(WavSink(args.wav, OUTPUT_RATE))
            elif platform.system() == "Linux":
                from .pulse import PulseVirtualMic

                mic = PulseVirtualMic(args.virtual_mic or "rt-f2f-mic").open()
                cleanup.callback(mic.close)
                created.append(f"PulseAudio source {mic.name} (null sink {mic.sink})")
                audio_sinks.append(open_device_sink("pulse", OUTPUT_RATE, env={"PULSE_SINK": mic.sink}))
                audio_sinks[-1].name = f"virtual microphone {mic.name}"
            else:
                audio_sinks.append(
                    open_device_sink(args.virtual_mic or DEFAULT_VIRTUAL_MIC.get(platform.system()), OUTPUT_RATE)
                )
            lipsync, lipsync_info = _load_lipsync(args)
            if engine is None:
                print(f"loading models for {args.source} -> {args.target} ...", file=sys.stderr)
                engine = SpeechEngine(speech_config)
            await asyncio.to_thread(engine.load)
            print(
                f"rt-f2f camera: {media.name} -> {', '.join(s.name for s in (*video_sinks, *audio_sinks))} "
                f"(delay {args.delay:g} s; Ctrl-C stops)",
                file=sys.stderr,
            )
            live_video = any(isinstance(s, VirtualCameraSink) for s in video_sinks)
            config = CameraConfig(args.delay, args.max_delay, args.duration, 0.0 if args.quiet else 1.0, live_video)
            session = CameraSession(engine, lipsync, media, video_sinks, audio_sinks, config, print_status)
            state = await session.run()
            ok = True
        finally:
            if not ok:  # close what a failed start opened, removing half-written files
                for sink in video_sinks:
                    with contextlib.suppress(Exception):
                        sink.close(False)
                for sink in audio_sinks:
                    with contextlib.suppress(Exception):
                        sink.close(0, False)
    if sys.stderr.isatty() and not args.quiet:
        print(file=sys.stderr)
    device_audio = [s for s in audio_sinks if isinstance(s, DeviceAudioSink)]
    extra = {
        "source": args.source,
        "target": args.target,
        "input": {"name": media.name, "width": media.width, "height": media.height, "fps": media.fps},
        "outputs": [s.name for s in (*video_sinks, *audio_sinks)],
        "virtual_devices_created_and_removed": created,
        "lipsync": lipsync_info,
    }
    return build_report(state, config, extra, device_audio)


def _load_lipsync(args: argparse.Namespace) -> tuple[Any | None, dict[str, Any]]:
    """The call server's generator set-up (loaded once, warmed up); without a checkpoint, the model store's
    ``wav2lip`` when it is on disk, else lip-sync is off (said once)."""
    from ..models.store import get_store
    from ..server.feeds.lipsync_model import load_lipsync

    checkpoint = args.checkpoint_path
    if checkpoint is None and get_store().status("wav2lip").where in ("env", "cache"):
        checkpoint = get_store().path("wav2lip")
    if checkpoint is None:
        reason = "no Wav2Lip checkpoint: the picture is delayed, mouths unchanged (pass --checkpoint_path wav2lip.pth)"
        print(f"rt-f2f camera: {reason}", file=sys.stderr)
        return None, {"enabled": False, "reason": reason}
    model = load_lipsync(checkpoint, args.lipsync_backend)
    return model, {"enabled": True, "backend": model.backend_name, "checkpoint": str(model.checkpoint)}


def run(args: argparse.Namespace) -> int:
    if args.list_devices:
        from .devices import format_devices

        print(format_devices())
        return 0
    import asyncio

    report = asyncio.run(run_camera(args))
    if args.report:
        from ..audio import write_json

        write_json(args.report, report)
    out, sync = report["output"], report["av_offset"]
    line = f"sent {out['frames']} frames ({out['seconds']:.1f} s) to {', '.join(report['outputs'])}"
    if sync["frames"]:
        line += (
            f"; A/V offset {sync['min_s'] * 1000:+.0f}..{sync['max_s'] * 1000:+.0f} ms "
            f"({sync['in_bt1359'] * 100:.0f} % inside BT.1359)"
        )
    print(line)
    if report["translation"]:
        print(f"translation: {report['translation']}")
    for created in report["virtual_devices_created_and_removed"]:
        print(f"removed {created}")
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "camera",
        help="virtual webcam + microphone: the translated, lip-synced you in any call app",
        description="Translate your camera and microphone into a virtual webcam and a virtual microphone that call "
        "apps list (README: 'Virtual camera and microphone' says how to set them up on Linux, macOS and Windows).",
    )
    p.add_argument("--list-devices", action="store_true", help="list cameras, microphones and sound outputs, then exit")
    p.add_argument("--source", help="language you speak (ISO 639-1, e.g. en)")
    p.add_argument("--target", help="language the call hears (e.g. pt)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--camera", help="camera device (Linux /dev/video0, macOS index or name, Windows name)")
    src.add_argument("--input", help="a talking video (with sound) to play in a loop instead of camera + microphone")
    p.add_argument(
        "--camera-format", help="FFmpeg input for --camera (default: v4l2, avfoundation or dshow by platform)"
    )
    p.add_argument("--microphone", help="microphone name or part of it (default: the system's default input)")
    p.add_argument("--checkpoint_path", help="Wav2Lip checkpoint (.pth); default: the model store's wav2lip if pulled")
    add_backend_argument(p, "--lipsync-backend")
    vout = p.add_mutually_exclusive_group()
    vout.add_argument(
        "--virtual-camera", metavar="NAME", help="v4l2loopback /dev/videoN or card label (default: the first one)"
    )
    vout.add_argument("--y4m", metavar="PATH", help="write the frames to a Y4M file (or FIFO) instead")
    aout = p.add_mutually_exclusive_group()
    aout.add_argument(
        "--virtual-mic",
        metavar="NAME",
        help="Linux: name of the microphone rt-f2f creates (default rt-f2f-mic); macOS/Windows: the cable's "
        "playback device (default 'BlackHole 2ch' / 'CABLE Input')",
    )
    aout.add_argument("--wav", metavar="PATH", help="write the audio to a WAV file instead")
    p.add_argument("--delay", type=float, default=2.0, help="target delay D in seconds (default 2.0)")
    p.add_argument(
        "--max-delay", type=float, default=20.0, help="speech later than this is dropped, counted (default 20 on CPU)"
    )
    p.add_argument("--duration", type=float, help="stop after this many seconds of output (default: Ctrl-C)")
    p.add_argument("--report", help="JSON report: A/V offset over time, delay, frames, lip-sync, devices")
    p.add_argument("--mt-model", default=None, help="MT model name or CTranslate2 folder")
    p.add_argument("--tts", default=None, help="TTS backend: piper, kokoro or espeak")
    p.add_argument("--quiet", action="store_true", help="no status line")
    p.set_defaults(func=run)
