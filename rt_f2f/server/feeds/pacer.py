"""Publishing a lip-synced feed's audio and frames at their playout time on the wall clock."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections import deque

import av

from ...frames import AudioChunk
from ..relay import Relay


class Pacer:
    """Publishes output at its playout time (wall clock).

    Each frame comes first as captured and again if its re-mouthed version is ready (same pts): the version held at
    playout is shown, and a render that comes after that is discarded (counted). A frame that would go out more than
    ``late_frame_s`` after the audio of its moment (it reached the pacer late) is dropped (counted); a stalled event
    loop delays audio and frames alike, which keeps them in sync.
    """

    def __init__(self, audio: Relay[AudioChunk], video: Relay[av.VideoFrame], late_frame_s: float) -> None:
        self.audio, self.video = audio, video
        self.late_frame_s = late_frame_s
        self._heap: list[tuple[float, int, AudioChunk | int]] = []  # (due, order, audio chunk or frame key)
        self._frames: dict[int, av.VideoFrame] = {}  # frame key (pts in 90 kHz ticks) -> version to show
        self._shown = -1  # key of the last frame shown
        self._heard: deque[tuple[float, float, float]] = deque(maxlen=100)  # recent audio: (pts, end, wall out)
        self._order = itertools.count()
        self._wake = asyncio.Event()
        self.stopped = False
        self.late_frames = 0
        self.late_renders = 0

    def put_audio(self, due: float, chunk: AudioChunk) -> None:
        if not self.stopped:
            heapq.heappush(self._heap, (due, next(self._order), chunk))
            self._wake.set()

    def put_frame(self, due: float, frame: av.VideoFrame) -> None:
        if self.stopped:
            return
        key = int(frame.pts)
        if key <= self._shown and key not in self._frames:
            self.late_renders += 1  # its moment has been shown already
            return
        if key not in self._frames:
            heapq.heappush(self._heap, (due, next(self._order), key))
            self._wake.set()
        self._frames[key] = frame

    async def run(self) -> None:
        while not self.stopped:
            if not self._heap:
                self._wake.clear()
                await self._wake.wait()
                continue
            wait = self._heap[0][0] - time.monotonic()
            if wait > 0:
                self._wake.clear()  # an earlier item wakes us before the timeout
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)
                continue
            _, _, item = heapq.heappop(self._heap)
            if isinstance(item, AudioChunk):
                self.audio.publish(item)
                self._heard.append((item.pts, item.end, time.monotonic()))
                continue
            frame = self._frames.pop(item)
            self._shown = max(self._shown, item)
            if self._audio_ahead(float(frame.pts * frame.time_base)) > self.late_frame_s:
                self.late_frames += 1
            else:
                self.video.publish(frame)

    def _audio_ahead(self, pts: float) -> float:
        """How long ago the audio of output moment ``pts`` went out (0 when it has not yet)."""
        for start, end, wall in reversed(self._heard):
            if start <= pts < end:
                return time.monotonic() - (wall + pts - start)
            if end <= pts:
                break
        return 0.0

    def stop(self) -> None:
        self.stopped = True
        self._heap.clear()
        self._frames.clear()
        self._wake.set()
