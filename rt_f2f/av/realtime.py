"""Drivers of the A/V scheduler's core: ``run_virtual`` replays timed arrivals on a virtual clock (file mode,
simulations, benchmarks); ``RealtimeScheduler`` paces the core on a monotonic clock for live sessions.

The core (``scheduler.AVScheduler``) reads no clock; these are the only places that decide when ``pull`` runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass

from ..errors import RtF2fError
from ..frames import SpeechChunk, VideoFrame
from .schedule import ScheduledItem
from .scheduler import AVScheduler


@dataclass(frozen=True)
class Arrival:
    """An input and the wall time it reaches the scheduler, for replays in virtual time."""

    wall: float
    item: SpeechChunk | VideoFrame


def run_virtual(
    scheduler: AVScheduler, arrivals: Iterable[Arrival], step: float = 0.01, until: float | None = None
) -> list[ScheduledItem]:
    """Replay arrivals on a virtual clock, pulling every ``step`` seconds, then flush: file mode and simulations.

    The clock starts at the first arrival and runs to ``until`` (default: the last arrival).
    """
    if step <= 0:
        raise RtF2fError(f"step must be positive, got {step}", "pull every 10-20 ms")
    events = sorted(arrivals, key=lambda a: a.wall)
    if not events:
        return scheduler.flush()
    end = events[-1].wall if until is None else until
    items: list[ScheduledItem] = []
    now, i, k = events[0].wall, 0, 0
    while now <= end + step:
        while i < len(events) and events[i].wall <= now:
            event = events[i]
            if isinstance(event.item, VideoFrame):
                scheduler.push_video(event.item, event.wall)
            else:
                scheduler.push_speech(event.item, event.wall)
            i += 1
        items.extend(scheduler.pull(now))
        k += 1
        now = events[0].wall + k * step
    items.extend(scheduler.flush())
    return items


class RealtimeScheduler:
    """Paces an ``AVScheduler`` on a monotonic clock: push inputs as they come, iterate ``stream()`` for output.

    Arrival times are stamped here, so callers only hand over frames. ``clock`` and ``sleep`` are injectable so
    the wrapper can run in virtual time.
    """

    def __init__(
        self,
        scheduler: AVScheduler | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        tick: float = 0.01,
    ) -> None:
        self.scheduler = scheduler or AVScheduler()
        self._clock = clock
        self._sleep = sleep
        self.tick = tick
        self._closed = False
        if self.scheduler.origin_wall is None:
            self.scheduler.origin_wall = clock()

    def push_speech(self, chunk: SpeechChunk) -> None:
        self.scheduler.push_speech(chunk, self._clock())

    def push_video(self, frame: VideoFrame) -> None:
        self.scheduler.push_video(frame, self._clock())

    def close(self) -> None:
        """No more input: ``stream()`` plays out what is held and ends."""
        self._closed = True

    async def stream(self) -> AsyncIterator[ScheduledItem]:
        while not self._closed:
            for item in self.scheduler.pull(self._clock()):
                yield item
            await self._sleep(self.tick)
        for item in self.scheduler.flush():
            yield item
