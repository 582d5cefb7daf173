"""``rt-f2f lipsync``: the original Wav2Lip ``inference.py`` as a subcommand, same flags, better pipeline.

This module is the command only (flags, their checks, the printed summary); the work is ``filerun.lipsync_file``,
whose docstring lists what differs from the original and why. Building the parser imports nothing heavy.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from ..errors import MediaError, RtF2fError
from .names import add_backend_argument


def _str2bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def add_subcommand(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "lipsync",
        help="make a face video or photo speak an audio file (Wav2Lip or LipGAN)",
        description="Lip-sync the face in a video or photo to an audio file with Wav2Lip or LipGAN; writes an H.264 MP4.",
    )
    p.add_argument(
        "--checkpoint_path",
        help="Wav2Lip checkpoint (wav2lip.pth, wav2lip_gan.pth) or LipGAN Keras weights (.h5); "
        "default: the model store's 'wav2lip'",
    )
    p.add_argument(
        "--model", choices=("auto", "wav2lip", "lipgan"), default="auto",
        help="generator; auto: recognised from the checkpoint (a Keras .h5 is LipGAN) (default: auto)",
    )  # fmt: skip
    p.add_argument("--face", required=True, help="video (mp4, ...) or image (jpg, png) with the face")
    p.add_argument("--audio", required=True, help="speech to lip-sync to (wav, mp3, or a video's audio track)")
    p.add_argument("--outfile", default="results/result_voice.mp4", help="output MP4 (default: %(default)s)")
    p.add_argument(
        "--static", type=_str2bool, nargs="?", const=True, default=False,
        help="use only the first video frame (implied for images)",
    )  # fmt: skip
    p.add_argument("--fps", type=float, default=25.0, help="frame rate when --face is an image (default: 25)")
    p.add_argument("--nosmooth", action="store_true", help="do not smooth face boxes over time")
    p.add_argument("--wav2lip_batch_size", type=int, default=128, help="generator batch size (default: 128)")
    p.add_argument(
        "--face_det_batch_size", type=int, default=16, help="frames tracked per face-detector batch (default: 16)"
    )
    add_backend_argument(p, "--backend")
    add_face_arguments(p, detect_every=5)
    p.add_argument(
        "--crop", type=int, nargs=4, default=[0, -1, 0, -1], metavar=("TOP", "BOTTOM", "LEFT", "RIGHT"),
        help="crop every frame to this region (after --resize_factor and --rotate); -1 = up to the edge",
    )  # fmt: skip
    p.add_argument(
        "--box", type=int, nargs=4, default=[-1, -1, -1, -1], metavar=("TOP", "BOTTOM", "LEFT", "RIGHT"),
        help="a fixed face box instead of detection (no --pads added); for a face that barely moves",
    )  # fmt: skip
    p.add_argument("--rotate", action="store_true", help="turn the video 90 degrees clockwise (phone videos)")
    p.add_argument(
        "--exact", action="store_true",
        help="reference mode: the generator gets exactly the original inference.py's inputs (fp32 torch, bilinear "
        "--resize_factor, the video looped by jumping back to its start); slower on CPUs with bf16",
    )  # fmt: skip
    p.set_defaults(func=run)
    return p


def add_face_arguments(p: argparse.ArgumentParser, detect_every: int) -> None:
    """The face-finding flags ``lipsync`` and ``preprocess`` share, so training crops are made like inference's."""
    p.add_argument(
        "--pads", type=int, nargs=4, default=[0, 10, 0, 0], metavar=("TOP", "BOTTOM", "LEFT", "RIGHT"),
        help="padding around the detected face in pixels; include the chin (default: 0 10 0 0)",
    )  # fmt: skip
    p.add_argument("--resize_factor", type=int, default=1, help="divide the frame size by this (e.g. 2 for 1080p)")
    p.add_argument(
        "--face_detector", choices=("auto", "mediapipe", "s3fd"), default="auto",
        help="auto: S3FD if its weights are installed, else mediapipe",
    )  # fmt: skip
    p.add_argument("--s3fd_path", default=None, help="S3FD weights (s3fd.pth) for --face_detector s3fd")
    p.add_argument(
        "--detect_every", type=int, default=detect_every,
        help=f"run the detector every N frames; 1 = every frame (default: {detect_every})",
    )  # fmt: skip


def _check_args(args: argparse.Namespace) -> None:
    from ..outputs import check_outputs

    hint = "see rt-f2f lipsync --help for the default"
    if args.fps <= 0 or not math.isfinite(args.fps):
        raise RtF2fError(f"--fps must be a positive number, got {args.fps}", "e.g. --fps 25")
    if args.resize_factor < 1:
        raise RtF2fError(f"--resize_factor must be >= 1, got {args.resize_factor}", "1 keeps the size, 2 halves it")
    if args.wav2lip_batch_size < 1 or args.face_det_batch_size < 1:
        raise RtF2fError("batch sizes must be >= 1", hint)
    if args.detect_every < 1:
        raise RtF2fError(f"--detect_every must be >= 1, got {args.detect_every}", hint)
    if any(p < 0 for p in args.pads):
        raise RtF2fError(f"--pads must not be negative, got {args.pads}", "give four pixel counts >= 0, e.g. 0 10 0 0")
    top, bottom, left, right = args.crop
    if (
        top < 0
        or left < 0
        or bottom < -1
        or right < -1
        or (bottom != -1 and bottom <= top)
        or (right != -1 and right <= left)
    ):
        raise RtF2fError(
            f"--crop {args.crop} is not a region", "pass TOP BOTTOM LEFT RIGHT with TOP < BOTTOM, LEFT < RIGHT"
        )
    if args.box != [-1, -1, -1, -1]:
        top, bottom, left, right = args.box
        if min(args.box) < 0 or bottom <= top or right <= left:
            raise RtF2fError(f"--box {args.box} is not a region", "pass TOP BOTTOM LEFT RIGHT in pixels of the frame")
    check_outputs(("--outfile", args.outfile))
    for name in ("face", "audio"):
        path = Path(getattr(args, name))
        if not path.is_file():
            raise MediaError(f"--{name} {path}: no such file", "check the path")


def run(args: argparse.Namespace) -> int:
    from .filerun import lipsync_file

    _check_args(args)
    result = lipsync_file(
        args.checkpoint_path,
        args.face,
        args.audio,
        args.outfile,
        static=bool(args.static),
        fps=args.fps,
        pads=tuple(args.pads),
        resize_factor=args.resize_factor,
        smooth=not args.nosmooth,
        batch_size=args.wav2lip_batch_size,
        face_det_batch_size=args.face_det_batch_size,
        backend=args.backend,
        model=None if args.model == "auto" else args.model,
        face_detector=args.face_detector,
        s3fd_path=args.s3fd_path,
        detect_every=args.detect_every,
        crop=tuple(args.crop),
        box=None if args.box == [-1, -1, -1, -1] else tuple(args.box),
        rotate=args.rotate,
        exact=args.exact,
    )
    note = ""
    if result.frames_without_face:
        note = f"; {result.frames_without_face} frames without a face passed through unchanged"
    print(
        f"wrote {result.outfile}: {result.frames} frames at {result.fps:g} fps ({result.audio_seconds:.2f} s of audio)"
        f"{note}; backend {result.backend}, detector {result.detector}, {result.seconds:.1f} s "
        f"({result.fps_processed:.1f} frames/s)",
        file=sys.stderr,
    )
    return 0
