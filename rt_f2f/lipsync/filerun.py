"""A face video or photo plus an audio file in, an MP4 of the face speaking that audio out: ``lipsync_file``.

What ``rt-f2f lipsync`` (``filecmd``) and the benchmarks run. Same contract as the original Wav2Lip
``inference.py``; differences, each for a reason: the face is tracked (detector every few frames, optical flow
between, One-Euro smoothing) instead of detected on every frame; the mouth is blended in through a feathered mask
with colour matching instead of pasting a rectangle; frames without a face pass through (and are counted) instead
of aborting the run; frames stream from decoder to encoder (no whole video in memory unless it must loop); a video
shorter than the audio plays forward then backward (no jump cut); the MP4 is encoded and muxed in-process with
PyAV and appears atomically. The processing is the same ``LipSyncStream`` the live pipeline uses, so file and live
output agree.

Reference mode: the generator gets the original ``inference.py``'s inputs (frame count, mel windows, crops) by
default; ``exact`` adds fp32 torch and the original's resize and looping. The full list of what matches and what
differs on purpose is docs/WAV2LIP.md; tests/test_lipsync_parity.py checks it frame by frame.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import MediaError, RtF2fError

if TYPE_CHECKING:
    from .faces import FaceBox

log = logging.getLogger(__name__)

MAX_LOOP_BYTES = 2 << 30  # a video shorter than its audio is held in memory to loop it; beyond 2 GiB we refuse
PROGRESS_MIN_FRAMES = 100  # a progress bar for anything longer than 4 s at 25 fps
MUX_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)


@dataclass
class LipSyncFileResult:
    outfile: Path
    frames: int
    fps: float
    audio_seconds: float
    frames_without_face: int
    backend: str
    detector: str
    seconds: float
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def fps_processed(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def native_rate(path: Path) -> int:
    """The audio's own sample rate, rounded to a rate AAC takes (so the muxed track keeps its quality)."""
    import av

    try:
        with av.open(str(path)) as container:
            rate = container.streams.audio[0].rate if container.streams.audio else 16000
    except (av.error.FFmpegError, OSError, ValueError):
        return 16000
    return min(MUX_RATES, key=lambda r: abs(r - (rate or 16000)))


@dataclass(frozen=True)
class FramePrep:
    """The original's per-frame preparation of a video, in its order: ``--resize_factor``, ``--rotate``, ``--crop``.

    ``resize`` is done here only in reference mode (bilinear, as the original); otherwise the decoder already
    shrank the frame with area interpolation (sharper, no aliasing).
    """

    resize_factor: int = 1
    rotate: bool = False
    crop: tuple[int, int, int, int] = (0, -1, 0, -1)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        import cv2

        if self.resize_factor > 1:
            size = (max(1, image.shape[1] // self.resize_factor), max(1, image.shape[0] // self.resize_factor))
            image = cv2.resize(image, size)
        if self.rotate:
            image = cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
        top, bottom, left, right = self.crop
        bottom = image.shape[0] if bottom == -1 else bottom
        right = image.shape[1] if right == -1 else right
        out = image[top:bottom, left:right]
        if out.size == 0:
            raise MediaError(
                f"--crop {list(self.crop)} leaves nothing of a {image.shape[1]}x{image.shape[0]} frame",
                "pass a region inside the frame (after --resize_factor and --rotate)",
            )
        return np.ascontiguousarray(out)

    @property
    def is_identity(self) -> bool:
        return self.resize_factor == 1 and not self.rotate and self.crop == (0, -1, 0, -1)


def _fixed_box(box: tuple[int, int, int, int], image: np.ndarray) -> FaceBox:
    """``--box TOP BOTTOM LEFT RIGHT`` as the original slices it: no pads, clipped to the frame."""
    from .faces import FaceBox

    top, bottom, left, right = box
    h, w = image.shape[:2]
    if top >= h or left >= w:
        raise MediaError(f"--box {list(box)} lies outside the {w}x{h} frame", "give the box in the frame's pixels")
    return FaceBox(left, top, min(right, w), min(bottom, h))


def _looped(frames: Iterator[np.ndarray], n: int, path: Path, bounce: bool = True) -> Iterator[np.ndarray]:
    """Yield exactly ``n`` images: the video, then (if it is shorter) back and forth over it (or, with
    ``bounce`` off, from its start again, as the original's ``i % len(frames)`` does)."""
    held: list[np.ndarray] | None = []
    size = 0
    count = 0
    for image in frames:
        yield image
        count += 1
        if count >= n:
            return
        if held is not None:
            size += image.nbytes
            if size <= MAX_LOOP_BYTES:
                held.append(image)
            else:
                held = None
                log.info("video larger than %d bytes: not kept for looping", MAX_LOOP_BYTES)
    if held is None:
        raise MediaError(
            f"{path}: the video is shorter than the audio and too large to loop in memory",
            "trim the audio to the video's length, or pass --resize_factor 2",
        )
    cycle = held + held[-2:0:-1] if bounce and len(held) > 1 else held
    i = len(held) % len(cycle)
    while count < n:
        yield cycle[i]
        i = (i + 1) % len(cycle)
        count += 1


def _prepend(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def _chunks(items: Iterator[np.ndarray], size: int) -> Iterator[tuple[int, list[np.ndarray]]]:
    """(index of the first, up to ``size`` items) in order."""
    chunk: list[np.ndarray] = []
    first = 0
    for i, item in enumerate(items):
        if not chunk:
            first = i
        chunk.append(item)
        if len(chunk) == size:
            yield first, chunk
            chunk = []
    if chunk:
        yield first, chunk


def lipsync_file(
    checkpoint: str | Path | None,
    face: str | Path,
    audio: str | Path,
    outfile: str | Path,
    *,
    static: bool = False,
    fps: float = 25.0,
    pads: tuple[int, int, int, int] = (0, 10, 0, 0),
    resize_factor: int = 1,
    smooth: bool = True,
    batch_size: int = 128,
    face_det_batch_size: int = 16,
    backend: str | Any | None = None,
    model: str | None = None,
    face_detector: str = "auto",
    s3fd_path: str | Path | None = None,
    detect_every: int = 5,
    progress: bool | None = None,
    crop: tuple[int, int, int, int] = (0, -1, 0, -1),
    box: tuple[int, int, int, int] | None = None,
    rotate: bool = False,
    exact: bool = False,
) -> LipSyncFileResult:
    """Lip-sync ``face`` (video or still) to ``audio`` into an MP4 at ``outfile``; see the module docstring.

    ``backend`` is a backend name, a loaded backend object (benchmarks reuse one), or None for the best available.
    ``crop``, ``box`` and ``rotate`` are the original's ``--crop``, ``--box`` and ``--rotate``; ``exact`` is the
    reference mode (fp32 torch, the original's resize and looping); see "Reference mode" in the module docstring.
    ``model`` is "wav2lip", "lipgan" or None (recognised from the checkpoint).
    """
    from tqdm import tqdm

    from ..audio import read_audio
    from ..frames import VideoFrame
    from ..video import VideoWriter, probe_video, read_frames
    from .backends import default_backend, load_backend
    from .faces import FaceTracker, StaticFace, detect_static, load_detector
    from .mel import SAMPLE_RATE, frame_count, mel_steps, window_start
    from .stream import LipSyncStream

    started = time.perf_counter()
    face, audio, outfile = Path(face), Path(audio), Path(outfile)
    info = probe_video(face, default_fps=fps)
    static = static or info.is_image
    out_fps = fps if info.is_image else info.fps

    wav = read_audio(audio, SAMPLE_RATE)
    duration = wav.size / SAMPLE_RATE
    if duration < 1.0 / out_fps:
        raise MediaError(
            f"{audio}: {duration * 1000:.0f} ms of audio is shorter than one video frame at {out_fps:g} fps",
            "give at least a fraction of a second of speech",
        )
    n_frames = frame_count(mel_steps(wav.size), out_fps)  # the original's count: one frame per mel window
    mux_rate = native_rate(audio)
    mux_audio = wav if mux_rate == SAMPLE_RATE else read_audio(audio, mux_rate)

    if backend is None or isinstance(backend, str):
        if checkpoint is None:
            if model == "lipgan":
                raise RtF2fError(
                    "--model lipgan needs --checkpoint_path: LipGAN's weights are not in the model store",
                    "download the released LipGAN .h5 (linked from the Rudrabha/LipGAN README) and pass its path",
                )
            from ..models import model_path

            checkpoint = model_path("wav2lip")
        name = backend or ("torch" if exact else default_backend(checkpoint))
        if exact and name != "torch":
            raise RtF2fError(f"--exact runs the torch backend in fp32, not {name}", "drop --backend, or drop --exact")
        # torch runs any batch size; the exported engines keep their own batch limits and split larger batches
        opts: dict[str, Any] = {"max_batch": batch_size} if name.startswith("torch") else {}
        if exact:
            opts["precision"] = "fp32"
        engine = load_backend(name, checkpoint, model=model, **opts)
    else:
        engine = backend

    prep = FramePrep(resize_factor if exact else 1, rotate, tuple(crop))
    decode_factor = 1 if exact else resize_factor

    def decoded(limit: int) -> Iterator[np.ndarray]:
        for f in read_frames(face, decode_factor, max_frames=limit, default_fps=fps):
            yield f.image if prep.is_identity else prep(f.image)

    detector = load_detector(face_detector, s3fd_path, batch_size=face_det_batch_size) if box is None else None
    try:
        if static:
            still = next(decoded(1))
            tracker = StaticFace(_fixed_box(box, still)) if box is not None else detect_static(detector, still, pads)
            if tracker.box is None:
                raise MediaError(
                    f"{face}: no face found in the {'image' if info.is_image else 'first frame'}",
                    "use a photo where the face is frontal and well lit, or a larger --face image",
                )
            images: Iterator[np.ndarray] = (still for _ in range(n_frames))
        else:
            frames = decoded(n_frames)
            if box is not None:
                first_image = next(frames)
                tracker = StaticFace(_fixed_box(box, first_image))
                frames = _prepend(first_image, frames)
            else:
                tracker = FaceTracker(detector, detect_every=detect_every, pads=pads, smooth=smooth, fps=out_fps)
            images = _looped(frames, n_frames, face, bounce=not exact)
        stream = LipSyncStream(
            engine,
            fps=out_fps,
            batch_size=batch_size,
            max_latency_s=math.inf,  # offline: always fill whole batches
            tracker=tracker,
            audio_wait_s=math.inf,
            max_buffer_s=math.inf,  # all the audio is pushed up front; the stream trims it as frames go out
        )
        stream.push_audio(wav, 0.0)
        stream.end_audio()  # all of it: the edges are padded and the last window clamped as the original does
        show = (n_frames >= PROGRESS_MIN_FRAMES) if progress is None else progress
        with VideoWriter(outfile, out_fps, mux_audio, mux_rate) as writer:
            with tqdm(total=n_frames, unit="frame", file=sys.stderr, disable=not show, desc="lipsync") as bar:
                for first, chunk in _chunks(images, face_det_batch_size):
                    # the tracker sees a chunk at once so its keyframe detections run as one detector batch
                    times = [(first + k) / out_fps for k in range(len(chunk))]
                    boxes = tracker.track(chunk, times)
                    for k, (image, face_box) in enumerate(zip(chunk, boxes, strict=True)):
                        frame = VideoFrame(image=image, pts=times[k], index=first + k, source=str(face))
                        for out in stream.push_video(frame, face_box, window_start(first + k, out_fps)):
                            writer.write(out.image)
                            bar.update(1)
                for out in stream.flush():
                    writer.write(out.image)
                    bar.update(1)
            if tracker.stats.with_face == 0:
                raise MediaError(
                    f"{face}: no face found in any of its {tracker.stats.frames} frames",
                    "use a video where the face is visible and frontal, or try --face_detector s3fd / --resize_factor",
                )
            if writer.frames_written != n_frames:  # pragma: no cover - an invariant of the stream
                raise RuntimeError(f"wrote {writer.frames_written} frames, expected {n_frames}")
    finally:
        if detector is not None:
            detector.close()
    s = stream.stats
    return LipSyncFileResult(
        outfile=outfile,
        frames=n_frames,
        fps=out_fps,
        audio_seconds=duration,
        frames_without_face=s.frames_without_face,
        backend=getattr(engine, "name", type(engine).__name__),
        detector="--box" if detector is None else getattr(detector, "name", type(detector).__name__),
        seconds=time.perf_counter() - started,
        stats={
            "batches": s.batches,
            "infer_seconds": s.infer_seconds,
            "detector_runs": tracker.stats.detector_runs,
            "flow_steps": getattr(tracker.stats, "flow_steps", 0),
            "faceless_indices": list(tracker.stats.faceless_indices),
        },
    )
