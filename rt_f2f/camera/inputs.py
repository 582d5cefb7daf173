"""What the speaker sends: a camera plus a microphone, or a recorded talking video played in a loop.

Every input hands over audio (16 kHz mono ``AudioChunk``) and frames (RGB ``VideoFrame``) with timestamps on the
session clock (seconds since ``origin`` on ``time.monotonic``) and the wall time they arrived. A looping file is
paced at its own timestamps from ``origin``, loop after loop without a seam in time (demos and tests). A camera's
frames keep the device's timestamps, anchored to the session clock at the first frame (re-anchored when the device
clock jumps); the microphone's pts count its samples from the first block, so audio time is the sample clock, the
session's master (the scheduler corrects video drift against it).
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

from ..errors import MediaError
from ..frames import AudioChunk, VideoFrame
from ..rates import ENGINE_RATE
from ..speech import CHUNK_SECONDS
from ..video import pad_to_even
from .devices import DeviceError, camera_format, default_camera, ffmpeg_camera_url, find_sound_device

log = logging.getLogger(__name__)

OnAudio = Callable[[AudioChunk, float], None]
OnVideo = Callable[[VideoFrame, float], None]


class LiveInput(Protocol):
    name: str
    width: int
    height: int
    fps: float

    async def run(self, origin: float, on_audio: OnAudio, on_video: OnVideo) -> None:
        """Deliver media until cancelled (or, for a device, until it fails: then raise DeviceError)."""

    def close(self) -> None: ...


class FileLoopInput:
    """``--input FILE``: a talking video (with sound) played at real time, looped for as long as the run lasts.

    The loop period is the length of the audio; frames past it are skipped and a video shorter than its audio holds
    its last frame, so loop ``j`` starts at exactly ``j * period`` for sound and picture alike.
    """

    def __init__(self, path: str) -> None:
        from ..audio import read_audio
        from ..video import probe_video

        info = probe_video(path)
        if info.is_image:
            raise MediaError(f"{path}: a still image has no speech", "give a talking video with its sound")
        if not info.has_audio:
            raise MediaError(f"{path}: has no audio track", "give a talking video with its sound")
        self.path = path
        self.name = f"file {path} (looped)"
        self.samples = read_audio(path, ENGINE_RATE)
        self.period = self.samples.size / ENGINE_RATE
        if self.period < 0.5:
            raise MediaError(f"{path}: only {self.period:.2f} s long", "give at least a second of talking video")
        self.fps = info.fps
        self.width, self.height = info.width + (info.width & 1), info.height + (info.height & 1)
        self.loops = 0

    async def run(self, origin: float, on_audio: OnAudio, on_video: OnVideo) -> None:
        await asyncio.gather(self._audio(origin, on_audio), self._video(origin, on_video))

    async def _audio(self, origin: float, on_audio: OnAudio) -> None:
        step = int(CHUNK_SECONDS * ENGINE_RATE)
        n = 0
        total = self.samples.size
        while True:
            start = n % total
            block = self.samples[start : start + step]
            if block.size < step:  # the loop's seam falls inside this block
                block = np.concatenate([block, self.samples[: step - block.size]])
            chunk = AudioChunk(block, ENGINE_RATE, n / ENGINE_RATE, source="file")
            wait = origin + chunk.end - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            on_audio(chunk, time.monotonic())
            n += step

    async def _video(self, origin: float, on_video: OnVideo) -> None:
        from ..video_timeline import ThreadedFrames, looped_frames

        frames = ThreadedFrames(looped_frames(self.path, self.period, self.fps))
        try:
            for index in itertools.count():
                frame = await frames.next()
                if frame is None:  # a looped timeline never ends; closed meanwhile
                    return
                self.loops = frame.loop
                await self._deliver(origin, frame.pts, frame.image, index, on_video)
        finally:
            frames.close()

    @staticmethod
    async def _deliver(origin: float, pts: float, image: np.ndarray, index: int, on_video: OnVideo) -> None:
        wait = origin + pts - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        on_video(VideoFrame(image, pts, index, "file"), time.monotonic())

    def close(self) -> None:
        pass


def _camera_error(device: str, exc: BaseException) -> DeviceError:
    code = getattr(exc, "errno", None)
    if code == errno.EBUSY:
        return DeviceError(f"camera {device} is busy", "close the app that is using it (a call app, OBS ...) and retry")
    if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
        return DeviceError(f"no camera {device}", "connect one, or pick another: `rt-f2f camera --list-devices`")
    if code == errno.EACCES:
        return DeviceError(
            f"no permission to open camera {device}", "add yourself to the 'video' group and log in again"
        )
    return DeviceError(f"camera {device} cannot be opened ({exc})", "check it with `rt-f2f camera --list-devices`")


class CaptureInput:
    """A camera (PyAV: v4l2 / avfoundation / dshow, or ``camera_input``: any FFmpeg input format that delivers
    frames live) and a microphone (sounddevice), both read on threads."""

    def __init__(
        self, camera: str | None, microphone: str | None, fps: float = 25.0, camera_input: str | None = None
    ) -> None:
        import av

        self.device = camera or default_camera()
        if not self.device:
            raise DeviceError("no camera given", "pass --camera NAME (see `rt-f2f camera --list-devices`)")
        self.name = f"camera {self.device} + microphone {microphone or '(default)'}"
        try:
            if camera_input:  # another FFmpeg input that streams frames live (a Y4M FIFO, x11grab ...)
                self.container = av.open(self.device, format=camera_input)
            else:
                self.container = av.open(
                    ffmpeg_camera_url(self.device), format=camera_format(), options={"framerate": f"{fps:g}"}
                )
        except (av.error.FFmpegError, OSError) as exc:
            raise _camera_error(self.device, exc) from exc
        try:
            self.mic_index = find_sound_device(microphone, "microphone")
        except BaseException:
            self.container.close()
            raise
        stream = self.container.streams.video[0]
        self.width = int(stream.codec_context.width) + (int(stream.codec_context.width) & 1)
        self.height = int(stream.codec_context.height) + (int(stream.codec_context.height) & 1)
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else fps
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None
        self.frames_in = 0
        self.audio_overflows = 0

    async def run(self, origin: float, on_audio: OnAudio, on_video: OnVideo) -> None:
        import sounddevice as sd

        loop = asyncio.get_running_loop()
        failed: asyncio.Future = loop.create_future()
        block = int(CHUNK_SECONDS * ENGINE_RATE)
        state = {"n": 0, "anchor": None}

        def mic(indata: np.ndarray, frames: int, times, status) -> None:
            wall = time.monotonic()
            if status.input_overflow:
                self.audio_overflows += 1
            if state["anchor"] is None:
                state["anchor"] = wall - origin - frames / ENGINE_RATE
            chunk = AudioChunk(indata[:, 0].copy(), ENGINE_RATE, state["anchor"] + state["n"] / ENGINE_RATE, "mic")
            state["n"] += frames
            loop.call_soon_threadsafe(on_audio, chunk, wall)

        def camera() -> None:
            anchor: tuple[float, float] | None = None
            try:
                for frame in self.container.decode(video=0):
                    if self._stop.is_set():
                        return
                    wall = time.monotonic()
                    arrived = wall - origin
                    media = float(frame.time) if frame.time is not None else arrived
                    if anchor is None or abs(anchor[1] + media - anchor[0] - arrived) > 1.0:
                        anchor = (media, arrived)  # first frame, or the device clock jumped
                    image = pad_to_even(frame.to_ndarray(format="rgb24"))
                    vf = VideoFrame(image, anchor[1] + media - anchor[0], self.frames_in, "camera")
                    self.frames_in += 1
                    loop.call_soon_threadsafe(on_video, vf, wall)
            except Exception as exc:  # noqa: BLE001  (handed to the loop as a device error)
                if not self._stop.is_set():
                    loop.call_soon_threadsafe(_fail, _camera_error(self.device, exc))
                return
            if not self._stop.is_set():
                loop.call_soon_threadsafe(
                    _fail, DeviceError(f"camera {self.device} stopped sending frames", "reconnect it")
                )

        def _fail(error: BaseException) -> None:
            if not failed.done():
                failed.set_exception(error)

        try:
            stream = sd.InputStream(
                samplerate=ENGINE_RATE,
                channels=1,
                dtype="float32",
                device=self.mic_index,
                blocksize=block,
                callback=mic,
            )
        except (sd.PortAudioError, ValueError) as exc:
            raise DeviceError(f"the microphone cannot be opened: {exc}", "pick another with --microphone") from exc
        reader = self._reader = threading.Thread(target=camera, name="rt-f2f-camera", daemon=True)
        with stream:
            reader.start()
            try:
                await failed
            finally:
                self._stop.set()

    def close(self) -> None:
        """Stop reading; the container is closed once the reader thread has left it (closing it under a decode
        in progress crashes FFmpeg). A camera that sends nothing more keeps the thread waiting: then the container
        is left to the process's exit, said in the log."""
        self._stop.set()
        if self._reader is not None:
            self._reader.join(timeout=2.0)
            if self._reader.is_alive():
                log.warning("camera %s does not answer: its reader thread is left to finish on its own", self.device)
                return
        self.container.close()
