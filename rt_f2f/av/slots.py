"""Source video on the output frame grid: the video half of the A/V scheduler.

A frame captured at camera time t is re-mapped onto the audio clock (``clock.VideoClockMapper``: drift between the
two clocks is measured and corrected) and lands on the output slot nearest that moment, shown at output pts
``D + slot / fps``. Its A/V offset is ``(t + D) - (the frame's output pts)``, so it stays within half a frame period
unless the frame had to move to a neighbouring slot (two frames for one slot: input faster than output, or pts
jitter), which is allowed only within ``MOVE_EARLY_LIMIT``/``MOVE_LATE_LIMIT``. A slot no frame arrived for repeats
the last frame (a freeze, counted apart from sync errors). Every frame not shown is counted by why.

Synchronous and clock-free like the rest of the scheduler: callers hand in arrival times and the slots due.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Callable

from ..errors import MediaError
from ..frames import VideoFrame
from .clock import VideoClockMapper
from .schedule import MOVE_EARLY_LIMIT, MOVE_LATE_LIMIT, ScheduledVideo, SchedulerConfig


def check_frame(frame: VideoFrame, arrival_wall: float) -> None:
    if not isinstance(frame, VideoFrame):
        raise MediaError(f"push_video expects a VideoFrame, got {type(frame).__name__}", "pass frames.VideoFrame")
    if not (math.isfinite(frame.pts) and math.isfinite(arrival_wall)):
        raise MediaError(f"video frame {frame.index} has a non-finite pts or arrival time", "fix the ingest")


class VideoSlots:
    """Frames held by output slot until due; ``emit`` hands out every slot up to the one due, in order."""

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config
        self.mapper = VideoClockMapper(
            max_drift=config.max_drift_ppm * 1e-6,
            slew=config.drift_slew,
            min_span=config.drift_min_span,
            enabled=config.correct_drift,
        )
        self.frames: dict[int, tuple[VideoFrame, float]] = {}  # slot -> (frame, source pts on the audio clock)
        self.next_slot: int | None = None  # the next slot to emit, once video has started
        self._last: tuple[VideoFrame, float] | None = None
        self._max_frames = int(math.ceil(config.fps * (config.max_delay + config.max_future + 1.0)))
        self.received = 0
        self.shown = 0
        self.repeated = 0
        self.dropped: Counter[str] = Counter()
        self.av_offsets: deque[float] = deque(maxlen=1_000_000)

    def push(self, frame: VideoFrame, arrival_wall: float, playout: float) -> None:
        """A checked frame arrived at ``arrival_wall``, when output pts ``playout`` (session time) was playing."""
        self.received += 1
        source = self.mapper.map(frame.pts, arrival_wall)
        if source > playout + self.config.max_future:
            self.dropped["future"] += 1
            return
        self._place(round(source * self.config.fps), frame, source)
        while len(self.frames) > self._max_frames:
            del self.frames[min(self.frames)]
            self.dropped["overflow"] += 1

    def _slot_offset(self, source: float, slot: int) -> float:
        return source - slot / self.config.fps

    def _place(self, slot: int, frame: VideoFrame, source: float) -> None:
        if self.next_slot is not None and slot < self.next_slot:
            self.dropped["late"] += 1
            return
        held = self.frames.get(slot)
        if held is None:
            self.frames[slot] = (frame, source)
            return
        if held[1] == source:
            self.dropped["duplicate"] += 1
            return
        # Two frames for one output slot (input faster than output, or pts jitter): the nearer one keeps it and
        # the other may take the free slot beside it if that keeps it inside the sync window.
        if abs(self._slot_offset(source, slot)) < abs(self._slot_offset(held[1], slot)):
            self.frames[slot], (frame, source) = (frame, source), held
        other = slot + (1 if source * self.config.fps > slot else -1)
        offset = self._slot_offset(source, other)
        if (
            other not in self.frames
            and (self.next_slot is None or other >= self.next_slot)
            and -MOVE_EARLY_LIMIT <= offset <= MOVE_LATE_LIMIT
        ):
            self.frames[other] = (frame, source)
        else:
            self.dropped["decimated"] += 1

    def emit(self, due: int, first: int, clauses_in: Callable[[float, float], tuple[int, ...]]) -> list[ScheduledVideo]:
        """Slots up to ``due``; video starts at its first frame, but never at a slot before ``first``.
        ``clauses_in(lo, hi)``: the clauses whose audio plays in that output span (the scheduler knows)."""
        cfg = self.config
        if self.next_slot is None:
            # Video starts with the first frame that is due; until then earlier frames may still arrive.
            if not self.frames or min(self.frames) > due:
                return []
            for slot in [s for s in self.frames if s < first]:
                del self.frames[slot]
                self.dropped["late"] += 1
            if not self.frames:
                return []
            self.next_slot = min(self.frames)
        out: list[ScheduledVideo] = []
        period = 1.0 / cfg.fps
        for slot in range(self.next_slot, due + 1):
            held = self.frames.pop(slot, None)
            repeat = held is None
            if repeat:
                held = self._last
                self.repeated += 1
            else:
                self._last = held
                self.shown += 1
            frame, source = held
            pts = cfg.delay + slot * period
            offset = (source + cfg.delay) - pts
            if not repeat:
                self.av_offsets.append(offset)
            span = (pts, pts + period)
            out.append(ScheduledVideo(frame, pts, slot, source, repeat, span, clauses_in(*span), offset))
        self.next_slot = max(self.next_slot, due + 1)
        return out
