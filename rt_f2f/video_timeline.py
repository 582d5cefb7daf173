"""A recorded talk's pictures on one timeline with its sound: what a file played as a live speaker shows, and when.

Two players use it: ``rt-f2f camera --input`` (``camera.inputs.FileLoopInput``) and ``rt-f2f event start --input``
(``event.speaker_file``). Both play the sound in a loop whose period is the sound's length, and the picture must
restart with it, so the picture is cut to that period: frames past it are skipped, and a picture shorter than its
sound holds its last frame until the period ends. Loop ``j`` thus starts at exactly ``j * period`` for sound and
picture alike, however long the run lasts. A ``lead_in`` (silence the sound starts each loop with) is shown as the
first frame held. Decoding is blocking: ``ThreadedFrames`` steps the iterator on a worker thread.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .video import pad_to_even, read_frames


@dataclass(frozen=True)
class TimedFrame:
    """One picture of the timeline: which loop it belongs to, its time (s from the start of loop 0), even-sized."""

    loop: int
    pts: float
    image: np.ndarray


def looped_frames(
    path: str | os.PathLike,
    period: float,
    fps: float,
    *,
    loop: bool = True,
    lead_in: float = 0.0,
    resize_factor: int = 1,
) -> Iterator[TimedFrame]:
    """The file's frames on the sound's timeline, loop after loop (one pass without ``loop``).

    Frames keep their own timestamps (shifted by ``lead_in``); held frames (lead-in, a picture shorter than its
    sound) come one per ``1 / fps``. A frame is in a loop when it starts half a frame before the period ends or
    earlier. ``resize_factor`` divides both sides while decoding (``read_frames``).
    """
    half = 0.5 / fps
    end = period - half
    for j in itertools.count() if loop else range(1):
        base = j * period
        slot = 0  # the next slot (``slot / fps`` on this loop's timeline) a held frame would take
        image: np.ndarray | None = None
        frames = read_frames(path, resize_factor)
        try:
            for frame in frames:
                pts = lead_in + frame.pts
                if pts >= end:
                    break
                image = pad_to_even(frame.image)
                while slot / fps < pts - half:  # the lead-in: the first picture waits for the sound to start
                    yield TimedFrame(j, base + slot / fps, image)
                    slot += 1
                yield TimedFrame(j, base + pts, image)
                slot = round(pts * fps) + 1
        finally:
            frames.close()
        while image is not None and slot / fps < end:  # a picture shorter than its sound holds its last frame
            yield TimedFrame(j, base + slot / fps, image)
            slot += 1


class ThreadedFrames:
    """Steps a blocking frame iterator on a worker thread, for an asyncio player.

    ``close`` may come while a step is still decoding (its task was cancelled, the thread runs on): a generator
    cannot be closed while it executes, so the step closes it once it returns, and the file is let go either way.
    """

    def __init__(self, frames: Iterator[TimedFrame]) -> None:
        self._frames = frames
        self._lock = threading.Lock()
        self.closed = False

    async def next(self) -> TimedFrame | None:
        """The next frame; None at the end (a single pass) or once closed."""
        return await asyncio.to_thread(self._step)

    def _step(self) -> TimedFrame | None:
        with self._lock:
            frame = None if self.closed else next(self._frames, None)
        if self.closed:
            with self._lock:
                self._frames.close()
            return None
        return frame

    def close(self) -> None:
        self.closed = True
        if self._lock.acquire(blocking=False):
            try:
                self._frames.close()
            finally:
                self._lock.release()
