"""``rt-f2f event start --input FILE``: a recorded talk played as the event's speaker, sound and picture on one clock.

A talk recorded on video is published with its own frames, so translators with a lip-sync checkpoint find the
speaker's face and re-mouth it; an audio-only file (or one whose only picture is cover art) gets the synthetic
pattern it always had. The sound is the call client's ``ArrayAudioTrack`` (48 kHz, a one-second lead-in, looped
with ``--loop``); the picture is ``video_timeline.looped_frames`` on that track's clock: the loop period is the
sound's length (lead-in included), so each loop restarts sound and picture together, and a frame is sent when the
audio track's clock reaches it. Frames that fall behind (a stalled loop, a Janus restart that paused sending) are
skipped, counted, so the picture catches up with the sound instead of lagging it. Without ``--loop`` the picture
holds its last frame once the talk is over.

Both tracks live as long as the event: a Janus restart re-publishes them (through new ``Outlet``s, as aiortc
stops a track whose sender ends), and they resume where the clock is. The file is untrusted input and checked before anything starts (``open_speaker_file``): missing, empty or
corrupt files, no sound, a first frame that does not decode are one line each; pictures above the call server's
per-participant cap (``Limits.max_video_pixels``, 1280x720) are scaled down by a whole factor while decoding.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..audio import read_audio
from ..errors import MediaError
from ..server.client import ArrayAudioTrack, PatternVideoTrack
from ..server.limits import Limits
from ..server.timebase import VIDEO_CLOCK, VIDEO_TIME_BASE, WEBRTC_RATE
from ..video import VideoInfo, probe_video, read_frames
from ..video_timeline import ThreadedFrames, TimedFrame, looped_frames

log = logging.getLogger(__name__)

LEAD_IN_S = 1.0  # silence (and the first picture) before the talk starts, each loop: forwarding settles meanwhile
MAX_PIXELS = Limits.max_video_pixels  # what the call server accepts from one participant's camera
MAX_FPS = 60.0  # frames closer together than this are skipped (counted): a broken rate cannot flood the encoder
LATE_FRAMES = 2  # a frame due this many frame times ago or more is skipped (counted): the picture catches up


def fit_factor(width: int, height: int, max_pixels: int = MAX_PIXELS) -> int:
    """The smallest whole factor that brings ``width`` x ``height`` within ``max_pixels`` (1: it fits already)."""
    factor = 1
    while (width // factor) * (height // factor) > max_pixels:
        factor += 1
    return factor


class FileVideoTrack(MediaStreamTrack):
    """The file's pictures, each sent when ``clock`` (the speaker's audio track) reaches its time on the timeline.

    Until the audio track has sent its first frame the picture keeps its own start, a few milliseconds apart.
    A corrupt stretch in the middle of the file (the first frame was checked) holds the last picture, logged once.
    """

    kind = "video"

    def __init__(self, frames: ThreadedFrames, clock: ArrayAudioTrack, fps: float) -> None:
        super().__init__()
        self._frames = frames
        self._clock = clock
        self._fps = min(max(fps, 1.0), MAX_FPS)
        self._own_start: float | None = None
        self._last: TimedFrame | None = None  # the last frame taken from the timeline (sent or skipped)
        self._sent_pts: float | None = None
        self._rtp_pts = -1
        self.frames_sent = 0
        self.frames_late = 0
        self.frames_too_dense = 0
        self.decode_error: str | None = None
        self._ended = False  # the single pass is over, or the file failed: only the last picture is left

    @property
    def loops(self) -> int:
        return self._last.loop if self._last is not None else 0

    def _origin(self) -> float:
        if self._clock.started is not None:
            return self._clock.started
        if self._own_start is None:
            self._own_start = time.monotonic()
        return self._own_start

    async def _next(self) -> TimedFrame:
        if not self._ended:
            try:
                frame = await self._frames.next()
            except MediaError as exc:
                frame, self.decode_error = None, str(exc)
                log.warning("speaker file: %s; the picture holds its last frame", exc)
            if frame is not None:
                return frame
            self._ended = True
        if self._last is None:  # nothing to hold: the file failed before its first frame
            raise MediaStreamError
        # the last picture stays, one frame per 1 / fps
        return TimedFrame(self._last.loop, self._last.pts + 1.0 / self._fps, self._last.image)

    async def recv(self) -> av.VideoFrame:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            frame = await self._next()
            self._last = frame
            if self._sent_pts is not None and frame.pts - self._sent_pts < 1.0 / MAX_FPS - 1e-6:
                self.frames_too_dense += 1
                continue
            due = self._origin() + frame.pts
            now = time.monotonic()
            if self._sent_pts is not None and now - due >= LATE_FRAMES / self._fps:
                self.frames_late += 1
                continue
            if due > now:
                await asyncio.sleep(due - now)
            self._sent_pts = frame.pts
            self._rtp_pts = max(self._rtp_pts + 1, round(frame.pts * VIDEO_CLOCK))
            out = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame.image), format="rgb24")
            out.pts, out.time_base = self._rtp_pts, VIDEO_TIME_BASE
            self.frames_sent += 1
            return out

    def stop(self) -> None:
        super().stop()
        self._frames.close()


class Outlet(MediaStreamTrack):
    """One publish's hold on a track that outlives it: aiortc stops a sender's track when the sender ends (its peer
    connection closed, or Janus died), and a Janus restart must not end the talk. Each publish gets new outlets on
    the same sound and picture, which go on where their clock is."""

    def __init__(self, inner: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = inner.kind
        self.inner = inner

    async def recv(self) -> av.frame.Frame:
        if self.readyState != "live":
            raise MediaStreamError
        return await self.inner.recv()


@dataclass
class SpeakerFile:
    """A checked ``--input`` file and the tracks it plays as (``tracks``), made once and kept for the event."""

    path: str
    loop: bool
    samples: np.ndarray  # the sound, 48 kHz mono
    picture: VideoInfo | None  # None: sound only, a pattern is shown
    resize_factor: int = 1
    size: tuple[int, int] = (320, 240)  # what goes out (the pattern's size for a sound-only file)
    audio: ArrayAudioTrack | None = field(default=None, repr=False)
    video: FileVideoTrack | None = field(default=None, repr=False)

    def tracks(self) -> list[MediaStreamTrack]:
        """Sound and picture to publish: outlets on the same file tracks every time (a re-publish resumes them on
        their clock; close the previous publish first, or two senders share the frames); a sound-only file gets a
        fresh pattern each time, as before."""
        if self.audio is None:
            self.audio = ArrayAudioTrack(self.samples, WEBRTC_RATE, lead_in_s=LEAD_IN_S, loop=self.loop)
        if self.picture is None:
            return [Outlet(self.audio), PatternVideoTrack(*self.size, 15)]
        if self.video is None:
            period = self.audio.samples.size / WEBRTC_RATE  # the loop restarts the lead-in too
            timeline = looped_frames(self.path, period, self.picture.fps, loop=self.loop,
                                     lead_in=LEAD_IN_S, resize_factor=self.resize_factor)  # fmt: skip
            self.video = FileVideoTrack(ThreadedFrames(timeline), self.audio, self.picture.fps)
        return [Outlet(self.audio), Outlet(self.video)]

    def stats(self) -> dict[str, object]:
        """What ``/api/event`` shows about the file: its picture, and frames skipped to keep up (never silent)."""
        video = self.video
        return {
            "path": self.path, "video": self.picture is not None, "width": self.size[0], "height": self.size[1],
            "loop": self.loop, "loops": video.loops if video else 0, "frames_sent": video.frames_sent if video else 0,
            "frames_late": video.frames_late if video else 0,
            "frames_too_dense": video.frames_too_dense if video else 0,
            "decode_error": video.decode_error if video else None,
        }  # fmt: skip

    def close(self) -> None:
        for track in (self.audio, self.video):
            if track is not None:
                track.stop()


def open_speaker_file(path: str, loop: bool) -> SpeakerFile:
    """Read and check ``--input`` before anything starts; MediaError (one line, with what to do) when it will not play.

    The sound is decoded whole (as before); of the picture the header and the first frame are.
    """
    samples = read_audio(path, WEBRTC_RATE)  # missing, empty, unreadable, no sound: one line each
    picture = _picture(path)
    if picture is None:
        return SpeakerFile(path, loop, samples, None)
    factor = fit_factor(picture.width, picture.height)
    frames = read_frames(path, factor, max_frames=1)
    try:
        first = next(frames)  # a picture that does not decode fails here, not in the middle of the event
    finally:
        frames.close()
    height, width = first.image.shape[:2]
    size = (width + (width & 1), height + (height & 1))
    if factor > 1:
        log.info("%s: %dx%d pictures are sent at %dx%d", path, picture.width, picture.height, *size)
    return SpeakerFile(path, loop, samples, picture, factor, size)


def _picture(path: str) -> VideoInfo | None:
    """The file's picture when it has a moving one: None for sound only, or a still (cover art in an MP3)."""
    try:
        with av.open(path) as container:
            streams = container.streams.video
            if not streams or streams[0].disposition & av.stream.Disposition.attached_pic:
                return None
    except (av.error.FFmpegError, OSError, ValueError) as exc:  # read_audio opened it: this is unlikely
        raise MediaError(f"{path}: not a readable media file ({exc})", "convert it to MP4, WAV or MP3") from exc
    info = probe_video(path)  # pictures above 8192x8192 are refused here
    return None if info.is_image else info
