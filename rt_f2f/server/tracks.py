"""Outgoing tracks for remote slots: paced on the wall clock, renumbered, so a slot can change speakers unnoticed.

``SlotAudioTrack`` and ``SlotVideoTrack`` read from the per-listener sinks in ``buffers``; their timestamps are
their own, so a slot can switch from one speaker to another (or to nothing) without the encoder noticing.
"""

from __future__ import annotations

import asyncio
import time
from fractions import Fraction

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .buffers import LatestFrames, PcmFifo
from .timebase import SAMPLES_PER_FRAME, VIDEO_CLOCK, VIDEO_TIME_BASE, WEBRTC_RATE


def audio_frame(samples: np.ndarray, pts: int, rate: int = WEBRTC_RATE) -> av.AudioFrame:
    """A mono s16 frame as aiortc's Opus encoder takes it."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
    frame.sample_rate = rate
    frame.pts = pts
    frame.time_base = Fraction(1, rate)
    return frame


class SlotAudioTrack(MediaStreamTrack):
    """Outgoing audio for one remote slot: 20 ms frames on the wall clock from a ``PcmFifo``, silence when empty.

    The clock is the track's own, so the RTP stream stays continuous whoever (if anyone) is in the slot; when the
    event loop stalls the clock jumps forward instead of sending a burst that would only add delay downstream.
    """

    kind = "audio"

    def __init__(self, fifo: PcmFifo) -> None:
        super().__init__()
        self.fifo = fifo
        self._start: float | None = None
        self._pts = 0
        self.frames_sent = 0
        self.silent_frames = 0
        self.frames_skipped = 0  # clock time jumped over after a stall (no sound is lost: the fifo keeps it)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            self._pts += SAMPLES_PER_FRAME
            due = self._start + self._pts / WEBRTC_RATE
            if due - now > 0:
                await asyncio.sleep(due - now)
            elif now - due > 0.2:
                skipped = int((now - due) * WEBRTC_RATE) // SAMPLES_PER_FRAME * SAMPLES_PER_FRAME
                self._pts += skipped
                self.frames_skipped += skipped // SAMPLES_PER_FRAME
        samples = self.fifo.read(SAMPLES_PER_FRAME)
        if samples is None:
            samples = np.zeros(SAMPLES_PER_FRAME, dtype=np.float32)
            self.silent_frames += 1
        self.frames_sent += 1
        return audio_frame(samples, self._pts)


class SlotVideoTrack(MediaStreamTrack):
    """Outgoing video for one remote slot: the newest frame from a ``LatestFrames`` sink, re-timed on the wall clock.

    An empty slot simply produces no frames (the sender then sends nothing, costing no CPU); frames keep their
    pixels but get fresh, strictly increasing 90 kHz timestamps, whichever speaker they come from.
    """

    kind = "video"

    def __init__(self, frames: LatestFrames[av.VideoFrame]) -> None:
        super().__init__()
        self.frames = frames
        self._t0 = time.monotonic()
        self._last_pts = -1
        self.frames_sent = 0

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self.frames.get()
        pts = max(self._last_pts + 1, int((time.monotonic() - self._t0) * VIDEO_CLOCK))
        self._last_pts = pts
        out = _retimed(frame, pts)
        self.frames_sent += 1
        return out


def _retimed(frame: av.VideoFrame, pts: int) -> av.VideoFrame:
    """A copy of ``frame`` with new timestamps.

    One decoded frame goes to every listener of a speaker and each listener's encoder runs on its own thread, so
    frames are never re-timed in place; a copy of 640x480 yuv420p costs about 0.3 ms.
    """
    width, height = frame.width + frame.width % 2, frame.height + frame.height % 2
    if frame.format.name == "yuv420p" and (width, height) == (frame.width, frame.height):
        out = av.VideoFrame.from_ndarray(frame.to_ndarray(), format="yuv420p")
    else:  # another pixel format, or odd sizes that yuv420p cannot hold: a scaled copy
        out = frame.reformat(width=width, height=height, format="yuv420p")
    out.pts = pts
    out.time_base = VIDEO_TIME_BASE
    return out
