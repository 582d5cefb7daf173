"""Lifecycle frames and the queue that lets the urgent ones overtake data (pipecat's system frames are the model).

Lifecycle is typed: ``ControlEvent`` frames from ``frames.py``, never a bare sentinel object. Two rules:

- urgent control frames (``URGENT``: an INTERRUPTION) are delivered before any data already queued: a speaker cut
  off must not wait behind seconds of audio that are now stale. They go into an unbounded lane, so putting one
  never waits on a full queue and back-pressure on data never holds one up at the door.
- everything else, END_OF_STREAM, FLUSH and END_OF_SPEECH included, stays in order behind the data before it:
  "finish what you hold" must come after what it is meant to finish. (FLUSH is not urgent for that reason: a flush
  that overtook the audio before it would close a segment that audio still belongs to.)

An interruption overtakes; it does not discard. The data queued before it still arrives after it, so nothing is
lost unseen; a stage that should drop stale work on an interruption does so itself and counts it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol

from .frames import ControlEvent, ControlKind, Frame

URGENT = frozenset({ControlKind.INTERRUPTION})


def is_urgent(frame: Frame) -> bool:
    """True for the control frames that overtake queued data."""
    return isinstance(frame, ControlEvent) and frame.kind in URGENT


def is_end(frame: Frame) -> bool:
    """True for the one end-of-stream signal: ``ControlEvent(END_OF_STREAM)``."""
    return isinstance(frame, ControlEvent) and frame.kind == ControlKind.END_OF_STREAM


def end_of_stream(pts: float) -> ControlEvent:
    """The end-of-stream frame; ``pts`` is where the stream ended on the session clock (its last frame's time)."""
    return ControlEvent(ControlKind.END_OF_STREAM, pts)


class FrameWriter(Protocol):
    """Anything a producer puts frames into: a ``FrameQueue`` or a plain ``asyncio.Queue`` of frames."""

    async def put(self, frame: Frame, /) -> None: ...


async def end_stream(queue: FrameWriter, end: ControlEvent) -> None:
    """Put the end-of-stream frame, unless this task is being cancelled.

    A cancelled producer has no reader left: its consumer is being cancelled too, so a full queue would never drain
    and the cancellation (a shutdown, a peer leaving) would wait forever on the put. A producer that ends normally
    or fails still signals the end, so the reader stops and surfaces the error."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        return
    await queue.put(end)


class FrameQueue:
    """Frames between two tasks: a bounded data lane and an unbounded lane for urgent control frames.

    ``put`` routes by kind (``is_urgent``), so producers never choose a lane; ``get`` empties the urgent lane
    first. Made for one reader; several writers are fine. Not thread-safe: call it from its event loop (from
    another thread, through ``loop.call_soon_threadsafe(queue.put_urgent, frame)``).
    """

    def __init__(self, maxsize: int) -> None:
        """``maxsize`` bounds the data lane (at least 1): a slow reader pushes back on the writer."""
        if maxsize < 1:
            raise ValueError(f"a FrameQueue holds at least one data frame, not {maxsize}")
        self._data: asyncio.Queue[Frame] = asyncio.Queue(maxsize)
        self._urgent: deque[Frame] = deque()
        self._ready = asyncio.Event()

    async def put(self, frame: Frame) -> None:
        """Queue a frame: an urgent control frame at once, in front of the data; anything else in order, waiting
        while the data lane is full."""
        if is_urgent(frame):
            self.put_urgent(frame)
            return
        await self._data.put(frame)
        self._ready.set()

    def put_urgent(self, frame: Frame) -> None:
        """Put a frame in front of every queued data frame (behind earlier urgent ones); never waits."""
        self._urgent.append(frame)
        self._ready.set()

    async def get(self) -> Frame:
        """The next frame: the oldest urgent one if any, else the oldest data frame (waits while both are empty)."""
        while True:
            if self._urgent:
                return self._urgent.popleft()
            if not self._data.empty():
                return self._data.get_nowait()  # also wakes a writer waiting on a full data lane
            self._ready.clear()
            await self._ready.wait()

    def qsize(self) -> int:
        """Frames waiting in both lanes."""
        return len(self._urgent) + self._data.qsize()
