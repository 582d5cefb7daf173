"""``rt-f2f preprocess VIDEO... --out DATA``: talking-face videos -> the original Wav2Lip training layout.

For each video: frames are taken at 25 fps (the rate the training code numbers frames at; other rates are sampled
and held), the face is found with the same detector and ``--pads`` that ``rt-f2f lipsync`` uses (so training crops
look like inference crops), and each face crop is written as ``DATA/<video>/<clip>/<frame>.jpg`` with the clip's
16 kHz audio as ``audio.wav``. Videos are cut into clips of ``--clip_seconds`` so that whole clips can be held out:
``DATA/val.txt`` lists about ``--val_fraction`` of them, ``DATA/train.txt`` the rest. Frames without a face are
skipped (a training window never spans them) and counted.
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MediaError, RtF2fError
from ..lipsync.filecmd import add_face_arguments

log = logging.getLogger(__name__)

MIN_AUDIO_SECONDS = 1.0  # below this no clip can hold a training window with margin
JPEG_QUALITY = 95


@dataclass
class PreprocessResult:
    out: Path
    train: list[str] = field(default_factory=list)
    val: list[str] = field(default_factory=list)
    frames: int = 0
    faces: int = 0
    frames_without_face: int = 0
    clips_dropped: int = 0  # clips with fewer than MIN_FRAMES face frames: written but not listed
    per_video: dict[str, dict[str, int]] = field(default_factory=dict)


def _group_name(path: Path, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem) or "video"
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    taken.add(name)
    return name


def _resampled(frames, src_fps: float, fps: float, limit: int):
    """(output index, RGB image) at ``fps`` from decoded ``VideoFrame``s: each output time shows the latest frame
    at or before it (sample and hold), up to ``limit`` outputs."""
    k = 0
    prev = None
    for f in frames:
        if prev is not None:
            while k < limit and k / fps < f.pts - 1e-6:
                yield k, prev.image
                k += 1
        prev = f
        if k >= limit:
            return
    if prev is not None:
        while k < limit and k / fps < prev.pts + 1.0 / src_fps - 1e-6:
            yield k, prev.image
            k += 1


def preprocess(
    videos: list[str | Path],
    out: str | Path,
    *,
    clip_seconds: float = 5.0,
    val_fraction: float = 0.1,
    face_detector: str = "auto",
    s3fd_path: str | Path | None = None,
    pads: tuple[int, int, int, int] = (0, 10, 0, 0),
    resize_factor: int = 1,
    detect_every: int = 1,
    progress: bool = True,
) -> PreprocessResult:
    """Write the dataset; raises ``NoSampleError`` when no clip ends up with enough face frames."""
    import cv2
    import numpy as np
    from tqdm import tqdm

    from ..audio import read_audio, write_wav
    from ..lipsync.faces import FaceTracker, load_detector
    from ..lipsync.mel import SAMPLE_RATE
    from ..video import probe_video, read_frames
    from .dataset import AUDIO_NAME, FPS, MIN_FRAMES, NoSampleError, write_split

    if clip_seconds * FPS < MIN_FRAMES:
        raise RtF2fError(f"--clip_seconds {clip_seconds} is too short", f"use at least {MIN_FRAMES / FPS:.2f} s")
    if not 0 <= val_fraction < 1:
        raise RtF2fError(f"--val_fraction must be in [0, 1), got {val_fraction}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = PreprocessResult(out)
    clips: list[str] = []
    taken: set[str] = set()
    per_clip = int(round(clip_seconds * FPS))
    detector = load_detector(face_detector, s3fd_path)
    try:
        for video in map(Path, videos):
            info = probe_video(video)
            if info.is_image:
                raise MediaError(f"{video}: a still image cannot teach lip sync", "give videos of someone talking")
            if not info.has_audio:
                raise MediaError(f"{video}: has no audio track", "give videos with the speaker's own voice")
            wav = read_audio(video, SAMPLE_RATE)
            seconds = wav.size / SAMPLE_RATE
            if seconds < MIN_AUDIO_SECONDS:
                raise MediaError(
                    f"{video}: {seconds:.2f} s of audio is too little to train on",
                    f"give videos with at least {MIN_AUDIO_SECONDS:g} s of speech (minutes are better)",
                )
            group = _group_name(video, taken)
            tracker = FaceTracker(detector, detect_every=detect_every, pads=pads, smooth=True, fps=FPS)
            limit = int(seconds * FPS)
            counts = {"frames": 0, "faces": 0, "without_face": 0}
            written: dict[int, int] = {}
            frames = read_frames(video, resize_factor)
            with tqdm(total=limit, desc=f"preprocess {video.name}", unit="frame", file=sys.stderr,
                      disable=not progress) as bar:  # fmt: skip
                for k, image in _resampled(frames, info.fps, FPS, limit):
                    box = tracker.update(image, k / FPS)
                    counts["frames"] += 1
                    bar.update(1)
                    if box is None:
                        counts["without_face"] += 1
                        continue
                    clip, local = divmod(k, per_clip)
                    folder = out / group / f"{clip:04d}"
                    folder.mkdir(parents=True, exist_ok=True)
                    x1, y1, x2, y2 = box.ints()
                    crop = np.ascontiguousarray(image[y1:y2, x1:x2, ::-1])  # RGB -> BGR: the original's jpgs
                    cv2.imwrite(str(folder / f"{local}.jpg"), crop, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                    written[clip] = written.get(clip, 0) + 1
                    counts["faces"] += 1
            for clip, n in sorted(written.items()):
                folder = out / group / f"{clip:04d}"
                start = clip * per_clip * SAMPLE_RATE // int(FPS)
                write_wav(folder / AUDIO_NAME, wav[start : start + per_clip * SAMPLE_RATE // int(FPS)], SAMPLE_RATE)
                if n >= MIN_FRAMES:
                    clips.append(f"{group}/{clip:04d}")
                else:
                    result.clips_dropped += 1
                    shutil.rmtree(folder)
            result.frames += counts["frames"]
            result.faces += counts["faces"]
            result.frames_without_face += counts["without_face"]
            result.per_video[str(video)] = counts
            if counts["faces"] == 0:
                log.warning("%s: no face found in any of its %d frames", video, counts["frames"])
    finally:
        detector.close()
    if not clips:
        raise NoSampleError(
            f"no face found in enough frames of {len(videos)} video(s) to make a training clip "
            f"({result.faces} face frames of {result.frames})",
            "use videos where one face is visible and frontal most of the time, or try --face_detector s3fd",
        )
    result.train, result.val = split_clips(clips, val_fraction)
    write_split(out, "train", result.train)
    write_split(out, "val", result.val)
    return result


def split_clips(clips: list[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """Every k-th clip to val (spread over the footage), at least one when there are two or more clips;
    with a single clip, it is both (training on one clip cannot hold any out)."""
    if len(clips) == 1:
        return clips, list(clips)
    n_val = max(1, round(len(clips) * val_fraction)) if val_fraction > 0 else 0
    if n_val == 0:
        return clips, []
    stride = len(clips) / n_val
    val_idx = {min(len(clips) - 1, int(stride * (i + 0.5))) for i in range(n_val)}
    return [c for i, c in enumerate(clips) if i not in val_idx], [c for i, c in enumerate(clips) if i in val_idx]


def add_subcommand(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "preprocess",
        help="turn talking-face videos into a Wav2Lip training dataset",
        description="Face crops per frame (25 fps) + 16 kHz audio per clip, in the original Wav2Lip layout, with "
        "train.txt / val.txt. Feed the result to `rt-f2f train syncnet|wav2lip --data DATA`.",
    )
    p.add_argument("videos", nargs="+", help="videos of the speaker talking, with their own audio")
    p.add_argument("--out", required=True, help="dataset folder to write (DATA)")
    p.add_argument("--clip_seconds", type=float, default=5.0, help="clip length (default: %(default)s s)")
    p.add_argument("--val_fraction", type=float, default=0.1, help="share of clips held out (default: %(default)s)")
    add_face_arguments(p, detect_every=1)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    for v in args.videos:
        if not Path(v).is_file():
            raise MediaError(f"{v}: no such file", "check the path")
    if args.detect_every < 1 or args.resize_factor < 1:
        raise RtF2fError("--detect_every and --resize_factor must be >= 1")
    r = preprocess(
        args.videos,
        args.out,
        clip_seconds=args.clip_seconds,
        val_fraction=args.val_fraction,
        face_detector=args.face_detector,
        s3fd_path=args.s3fd_path,
        pads=tuple(args.pads),
        resize_factor=args.resize_factor,
        detect_every=args.detect_every,
    )
    print(
        f"wrote {r.out}: {len(r.train)} train + {len(r.val)} val clips, {r.faces} face frames of {r.frames} "
        f"({r.frames_without_face} without a face skipped, {r.clips_dropped} clips too short dropped)",
        file=sys.stderr,
    )
    return 0
