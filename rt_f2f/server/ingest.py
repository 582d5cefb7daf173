"""Taking decoded media off aiortc's incoming tracks without letting its unbounded queues grow.

aiortc hands decoded frames to a track through an unbounded ``asyncio.Queue`` and has no playout buffer of its
own, so a consumer that falls behind makes delay grow without limit and without a sign. Each incoming track is
drained by one task that never blocks (``drain_track``); frames that arrive later than their timestamps allow are
spotted (``StaleFrames``) and dropped, counted; audio is converted to mono float32 (``DecodedAudio``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..audio import mono_samples
from .timebase import WEBRTC_RATE


class DecodedAudio:
    """Decoded WebRTC audio frames (any layout/format/rate) -> mono float32 at one rate."""

    def __init__(self, rate: int = WEBRTC_RATE) -> None:
        self.rate = rate
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)

    def convert(self, frame: av.AudioFrame) -> np.ndarray:
        frame.pts = None  # the resampler would otherwise insist on continuous timestamps across packet loss
        return mono_samples(self._resampler.resample(frame))


class StaleFrames:
    """Spots frames that come later than their media timestamps say they should.

    aiortc queues *encoded* frames for its decoder thread without a bound too: when decoding falls behind (a busy
    CPU), frames pile up there and later come out in a burst, each one on time for the drain but seconds late for
    a listener. A frame is stale when (arrival - media time) exceeds the best (smallest) such offset seen by more
    than ``max_lag_s``; the best offset creeps up slowly to follow clock drift, and restarts after a second of
    nothing but stale frames (the sender's clock jumped).
    """

    def __init__(self, max_lag_s: float, creep_s: float = 0.0005, reset_after_s: float = 1.0) -> None:
        self.max_lag_s = max_lag_s
        self.creep_s = creep_s
        self.reset_after_s = reset_after_s
        self._best: float | None = None
        self._stale_since: float | None = None

    def stale(self, frame: av.AudioFrame | av.VideoFrame, now: float) -> bool:
        if frame.pts is None or frame.time_base is None:
            return False
        offset = now - float(frame.pts * frame.time_base)
        if self._best is None or offset < self._best:
            self._best = offset
        else:
            self._best += self.creep_s
        if offset - self._best <= self.max_lag_s:
            self._stale_since = None
            return False
        if self._stale_since is None:
            self._stale_since = now
        elif now - self._stale_since > self.reset_after_s:
            self._best, self._stale_since = offset, None
            return False
        return True


async def drain_track(
    track: MediaStreamTrack,
    on_frame: Callable[[av.AudioFrame | av.VideoFrame], None],
    max_backlog: int = 3,
    on_drop: Callable[[int], None] | None = None,
    stale: StaleFrames | None = None,
) -> None:
    """Pull every decoded frame off ``track`` as it arrives, so aiortc's unbounded queue never grows.

    ``on_frame`` must not block. Should this task still fall behind (an event loop stalled by someone else),
    frames beyond ``max_backlog`` are discarded, oldest first, and reported through ``on_drop``; so are frames
    that ``stale`` finds late (a decoder catching up on a backlog).
    """
    queue: asyncio.Queue | None = getattr(track, "_queue", None)  # aiortc's RemoteStreamTrack decoded-frame queue
    try:
        while True:
            frame = await track.recv()
            if stale is not None and stale.stale(frame, time.monotonic()):
                if on_drop is not None:
                    on_drop(1)
                continue
            if queue is not None and queue.qsize() > max_backlog:
                dropped = 0
                while queue.qsize() > max_backlog:
                    item = queue.get_nowait()
                    if item is None:  # end of track: put it back for recv to see
                        queue.put_nowait(None)
                        break
                    dropped += 1
                if dropped and on_drop is not None:
                    on_drop(dropped)
            on_frame(frame)
    except MediaStreamError:
        return
