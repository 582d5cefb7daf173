"""Video files in and out: PyAV decodes any container/codec to RGB frames with timestamps, and writes H.264 MP4
with the audio muxed in.

Stills (jpg/png) open through the same reader as one frame at pts 0, so callers treat "a face photo" and "a face
video" alike. The writer goes through a temporary file beside the target (``atomic_output``): a failed or
interrupted run never leaves a half-written MP4 where a finished one is expected. H.264 in yuv420p needs even
dimensions; an odd width or height is padded by one replicated edge pixel rather than cropped, so no picture content
is lost and every input pixel keeps its coordinates.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import numpy as np

from .audio import atomic_output
from .errors import MediaError
from .frames import VideoFrame

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
MAX_PIXELS = 8192 * 8192  # untrusted input is bounded: larger frames are refused before any decoding work
MAX_FRAMES = 25 * 4 * 3600  # four hours at 25 fps


def is_image_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def fps_fraction(fps: float) -> Fraction:
    """A frame rate as the small fraction containers store (29.97 -> 30000/1001)."""
    if not np.isfinite(fps) or fps <= 0:
        raise MediaError(f"frame rate must be a positive number, got {fps}", "pass e.g. --fps 25")
    return Fraction(fps).limit_denominator(1001)


@dataclass(frozen=True)
class VideoInfo:
    """What a face source holds, read from its header before decoding."""

    path: Path
    width: int
    height: int
    fps: float
    frame_count: int  # from the header; 0 when the container does not say (a still counts as 1)
    is_image: bool
    has_audio: bool

    @property
    def duration(self) -> float:
        return self.frame_count / self.fps if self.fps > 0 else 0.0


def _open(path: Path):
    import av

    if not path.exists():
        raise MediaError(f"{path}: no such file", "check the path")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: the file is empty", "give a video or a photo with a face in it")
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise MediaError(f"{path}: not a readable video or image ({exc})", "convert it to MP4, JPG or PNG") from exc


def probe_video(path: str | os.PathLike, default_fps: float = 25.0) -> VideoInfo:
    """Header facts of a video or still; ``default_fps`` applies to stills (they have no rate of their own)."""
    path = Path(path)
    container = _open(path)
    with container:
        if not container.streams.video:
            raise MediaError(f"{path}: has no picture in it", "give a video or a photo with a face in it")
        stream = container.streams.video[0]
        width, height = int(stream.codec_context.width), int(stream.codec_context.height)
        image = is_image_path(path) or container.format.name.endswith("_pipe") or container.format.name == "image2"
        if width <= 0 or height <= 0 or width * height > MAX_PIXELS:
            raise MediaError(f"{path}: unsupported picture size {width}x{height}", "resize it below 8192x8192")
        rate = stream.average_rate or stream.guessed_rate
        fps = float(default_fps) if image or not rate else float(rate)
        frames = 1 if image else int(stream.frames or 0)
        if not frames and not image and stream.duration and stream.time_base:
            frames = int(round(float(stream.duration * stream.time_base) * fps))
        return VideoInfo(path, width, height, fps, frames, image, bool(container.streams.audio))


def read_frames(
    path: str | os.PathLike,
    resize_factor: int = 1,
    max_frames: int | None = None,
    default_fps: float = 25.0,
) -> Iterator[VideoFrame]:
    """Decode frames in order as RGB ``VideoFrame``s with pts in seconds from the stream's first frame.

    ``resize_factor`` > 1 divides both sides (the original's ``--resize_factor``), done here with area
    interpolation so callers never hold the full-size frame. A still yields one frame at pts 0.
    """
    import av
    import cv2

    if resize_factor < 1:
        raise MediaError(f"resize factor must be >= 1, got {resize_factor}", "pass 1 to keep the size")
    info = probe_video(path, default_fps)
    limit = MAX_FRAMES if max_frames is None else min(max_frames, MAX_FRAMES)
    container = _open(info.path)
    with container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        first_pts: float | None = None
        count = 0
        try:
            for frame in container.decode(stream):
                if count >= limit:
                    break
                image = frame.to_ndarray(format="rgb24")
                if resize_factor > 1:
                    size = (max(1, image.shape[1] // resize_factor), max(1, image.shape[0] // resize_factor))
                    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
                t = float(frame.time) if frame.time is not None else count / info.fps
                if first_pts is None:
                    first_pts = t
                yield VideoFrame(image=np.ascontiguousarray(image), pts=t - first_pts, index=count, source=str(path))
                count += 1
                if info.is_image:
                    break
        except av.error.FFmpegError as exc:
            raise MediaError(f"{info.path}: corrupt video after {count} frames ({exc})", "re-export the file") from exc
    if count == 0:
        raise MediaError(f"{info.path}: holds no decodable frames", "give a video or a photo with a face in it")


def even_size(width: int, height: int) -> tuple[int, int]:
    return width + (width & 1), height + (height & 1)


def pad_to_even(image: np.ndarray) -> np.ndarray:
    """Replicate the last row/column when a side is odd (yuv420p subsamples chroma 2x2)."""
    h, w = image.shape[:2]
    if not (h & 1 or w & 1):
        return image
    return np.pad(image, ((0, h & 1), (0, w & 1), (0, 0)), mode="edge")


class VideoWriter:
    """H.264 (libx264, yuv420p) MP4 with optional mono AAC audio, written atomically.

    Frames are written in order at a constant rate (``pts = index / fps``); audio given up front is interleaved
    with the video as frames arrive, so the file is playable however long it gets. Use as a context manager: the
    target path appears only when the block exits without an exception.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float,
        audio: np.ndarray | None = None,
        audio_rate: int = 16000,
        crf: int = 18,
        preset: str = "veryfast",
    ) -> None:
        self.path = Path(path)
        self.fps = fps_fraction(fps)
        self.audio = None if audio is None else np.ascontiguousarray(audio, dtype=np.float32).reshape(-1)
        self.audio_rate = int(audio_rate)
        self.crf = crf
        self.preset = preset
        self.frames_written = 0
        self._audio_written = 0
        self._atomic = None
        self._tmp: Path | None = None
        self._container = None
        self._vstream = None
        self._astream = None
        self._size: tuple[int, int] | None = None

    def __enter__(self) -> VideoWriter:
        self._atomic = atomic_output(self.path)
        tmp = self._tmp = self._atomic.__enter__()
        import av

        try:
            self._container = av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"})
        except BaseException:
            self._atomic.__exit__(None, None, None)
            raise
        return self

    def _open_streams(self, width: int, height: int) -> None:
        w, h = even_size(width, height)
        self._size = (width, height)
        v = self._container.add_stream("libx264", rate=self.fps)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        v.options = {"crf": str(self.crf), "preset": self.preset}
        self._vstream = v
        if self.audio is not None and self.audio.size:
            a = self._container.add_stream("aac", rate=self.audio_rate)
            a.layout = "mono"
            self._astream = a

    def write(self, image: np.ndarray) -> None:
        """Append one RGB uint8 frame; every frame must have the first frame's size."""
        import av

        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {image.shape} {image.dtype}")
        if self._vstream is None:
            self._open_streams(image.shape[1], image.shape[0])
        if (image.shape[1], image.shape[0]) != self._size:
            raise ValueError(f"frame size {image.shape[1]}x{image.shape[0]} differs from the first {self._size}")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pad_to_even(image)), format="rgb24")
        frame.pts = self.frames_written
        frame.time_base = 1 / self.fps
        for packet in self._vstream.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1
        self._write_audio_until(float(self.frames_written / self.fps))

    def _write_audio_until(self, seconds: float | None) -> None:
        import av

        if self._astream is None:
            return
        end = self.audio.size if seconds is None else min(self.audio.size, int(round(seconds * self.audio_rate)))
        if end <= self._audio_written:
            return
        chunk = self.audio[self._audio_written : end]
        frame = av.AudioFrame.from_ndarray(np.clip(chunk, -1.0, 1.0)[None, :], format="flt", layout="mono")
        frame.sample_rate = self.audio_rate
        frame.pts = self._audio_written
        frame.time_base = Fraction(1, self.audio_rate)
        for packet in self._astream.encode(frame):
            self._container.mux(packet)
        self._audio_written = end

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc_type is None:
                if self._vstream is None:
                    raise MediaError(f"{self.path}: no frames to write", "the input gave no frames")
                for packet in self._vstream.encode(None):
                    self._container.mux(packet)
                if self._astream is not None:
                    self._write_audio_until(None)
                    for packet in self._astream.encode(None):
                        self._container.mux(packet)
            self._container.close()
        except BaseException as err:
            self._container = None
            self._atomic.__exit__(type(err), err, err.__traceback__)
            raise
        self._atomic.__exit__(exc_type, exc, tb)


def write_video(
    path: str | os.PathLike,
    frames: Iterator[np.ndarray] | list[np.ndarray],
    fps: float,
    audio: np.ndarray | None = None,
    audio_rate: int = 16000,
    crf: int = 18,
) -> int:
    """Write RGB frames (and audio) to an H.264 MP4 atomically; returns the number of frames written."""
    with VideoWriter(path, fps, audio, audio_rate, crf) as writer:
        for image in frames:
            writer.write(image)
    return writer.frames_written
