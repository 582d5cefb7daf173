"""The simplest video policy for a translated feed: the original picture, held back by the speech lag."""

from __future__ import annotations

import asyncio
import time
from collections import deque

import av

from ..relay import Relay


class VideoDelayLine:
    """Holds video frames until ``delay`` seconds after they arrived, then publishes them.

    The translated audio of a sentence comes out seconds after the sentence was spoken; delaying the picture by
    about the same amount keeps faces and voices together. Changing ``delay`` takes effect at once: frames wait
    longer (the picture pauses) or are released early (it skips ahead). At most ``max_frames`` wait.
    """

    def __init__(self, out: Relay[av.VideoFrame], delay: float, max_frames: int = 300) -> None:
        self.out = out
        self.delay = delay
        self._frames: deque[tuple[float, av.VideoFrame]] = deque(maxlen=max_frames)
        self._wake = asyncio.Event()
        self.dropped = 0

    def push(self, frame: av.VideoFrame, wall: float) -> None:
        if len(self._frames) == self._frames.maxlen:
            self.dropped += 1
        self._frames.append((wall, frame))
        self._wake.set()

    async def run(self) -> None:
        while True:
            if not self._frames:
                self._wake.clear()
                await self._wake.wait()
                continue
            wall, frame = self._frames[0]
            wait = wall + self.delay - time.monotonic()
            if wait > 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=min(wait, 0.1))
                except TimeoutError:
                    pass
                continue
            self._frames.popleft()
            self.out.publish(frame)

    def clear(self) -> None:
        self._frames.clear()
