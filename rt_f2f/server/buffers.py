"""Per-listener sinks that never grow without bound: ``PcmFifo`` for audio, ``LatestFrames`` for video.

Each drops its oldest content when full and counts what it dropped, so a late pipeline shows up in the stats
instead of as drift.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")


class PcmFifo:
    """Mono float32 samples waiting for playout: a jitter buffer with a ceiling.

    Playout (``read``) restarts only once ``prebuffer`` samples are queued after an underrun, which hides network
    jitter; when more than ``max_samples`` are queued the oldest are dropped, which caps the delay the buffer can
    add. Dropped audio is counted (``dropped``) so a late pipeline shows up in the stats instead of as drift.
    """

    TRIM_AFTER_READS = 50  # one second of 20 ms reads

    def __init__(self, max_samples: int, prebuffer: int = 0, target: int | None = None) -> None:
        self.max_samples = max(1, int(max_samples))
        self.prebuffer = max(0, int(prebuffer))
        self.target = target  # when set, a backlog above it for a whole second is trimmed back to it
        self._blocks: deque[np.ndarray] = deque()
        self._size = 0
        self._playing = False
        self._above_target = 0
        self.dropped = 0

    def __len__(self) -> int:
        return self._size

    def put(self, samples: np.ndarray) -> None:
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if samples.size == 0:
            return
        self._blocks.append(samples)
        self._size += samples.size
        self._drop_oldest(self._size - self.max_samples)

    def _drop_oldest(self, excess: int) -> None:
        while excess > 0 and self._blocks:
            head = self._blocks[0]
            if head.size <= excess:
                self._blocks.popleft()
                cut = head.size
            else:
                self._blocks[0] = head[excess:]
                cut = excess
            self._size -= cut
            self.dropped += cut
            excess -= cut

    def read(self, n: int) -> np.ndarray | None:
        """Up to ``n`` samples zero-padded to ``n``, or None while the buffer is (re)filling.

        Sender and receiver clocks differ, so the backlog settles wherever the first burst left it; a jitter buffer
        that stays above ``target`` for a second is trimmed back, keeping passthrough delay near the target.
        """
        if not self._playing:
            if self._size == 0 or self._size < min(self.prebuffer, self.max_samples):
                return None
            self._playing = True
        if self.target is not None:
            self._above_target = self._above_target + 1 if self._size > self.target + n else 0
            if self._above_target >= self.TRIM_AFTER_READS:
                self._drop_oldest(self._size - self.target - n)
                self._above_target = 0
        out = np.zeros(n, dtype=np.float32)
        filled = 0
        while filled < n and self._blocks:
            head = self._blocks[0]
            take = min(n - filled, head.size)
            out[filled : filled + take] = head[:take]
            if take == head.size:
                self._blocks.popleft()
            else:
                self._blocks[0] = head[take:]
            self._size -= take
            filled += take
        if self._size == 0:
            self._playing = False
        return out

    def clear(self) -> None:
        self._blocks.clear()
        self._size = 0
        self._playing = False


class LatestFrames(Generic[T]):
    """A tiny queue that keeps only the newest ``maxlen`` items: for video, a late frame is worth nothing."""

    def __init__(self, maxlen: int = 2) -> None:
        self._items: deque[T] = deque(maxlen=maxlen)
        self._ready = asyncio.Event()
        self.dropped = 0

    def put(self, item: T) -> None:
        if len(self._items) == self._items.maxlen:
            self.dropped += 1
        self._items.append(item)
        self._ready.set()

    async def get(self) -> T:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def clear(self) -> None:
        self._items.clear()
