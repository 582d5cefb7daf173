"""Small async processors with bounded queues, and the pipeline that wires them.

A stage turns each input frame into zero or more output frames (an async generator), so a stage may hold state
(a growing ASR buffer, a half-finished clause) and emit when it is ready. Heavy compute runs on the stage's own
worker thread: the event loop that serves WebRTC never blocks, and each model sees one thread, in order.
Queues between stages are bounded so a slow stage pushes back instead of letting delay pile up unseen; lifecycle
travels through them as typed control frames (``framequeue``): an interruption overtakes queued data, the end of
stream follows it.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from .framequeue import FrameQueue, end_of_stream, end_stream, is_end
from .frames import ControlEvent, ControlKind, Frame

T = TypeVar("T")


@dataclass(frozen=True)
class LatencyRecord:
    """One hop through one stage: media timestamps in and out, wall times in and out."""

    stage: str
    media_in: float
    media_out: float
    wall_in: float
    wall_out: float

    @property
    def compute(self) -> float:
        return self.wall_out - self.wall_in


@dataclass
class LatencyLog:
    """Every stage's records for one session; benchmarks and reports read these."""

    records: list[LatencyRecord] = field(default_factory=list)

    def add(self, record: LatencyRecord) -> None:
        self.records.append(record)

    def for_stage(self, stage: str) -> list[LatencyRecord]:
        return [r for r in self.records if r.stage == stage]

    def summary(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for stage in dict.fromkeys(r.stage for r in self.records):
            compute = np.array([r.compute for r in self.for_stage(stage)])
            out[stage] = {
                "count": int(compute.size),
                "compute_total_s": float(compute.sum()),
                "compute_p50_s": float(np.percentile(compute, 50)),
                "compute_p95_s": float(np.percentile(compute, 95)),
                "compute_max_s": float(compute.max()),
            }
        return out


class Stage(ABC):
    """Base class: subclasses implement ``process`` (and ``flush`` if they hold state)."""

    name: str = "stage"

    def __init__(self) -> None:
        self.log: LatencyLog | None = None
        self._executor: ThreadPoolExecutor | None = None

    @abstractmethod
    def process(self, item: Frame) -> AsyncIterator[Frame]:
        """Consume one frame, yield the frames it completes.

        Control frames (FLUSH, END_OF_SPEECH, INTERRUPTION) arrive here too, in the order the queue delivers them
        (an INTERRUPTION ahead of queued data); yield one on after acting on it, or the pipeline passes it on once
        ``process`` returns. END_OF_STREAM never arrives here: the pipeline calls ``flush`` for it."""

    async def flush(self) -> AsyncIterator[Frame]:
        """End of stream: yield whatever is still held."""
        return
        yield  # pragma: no cover - makes this an async generator

    async def in_worker(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking compute on this stage's own thread, keeping the event loop free."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"rt-f2f-{self.name}")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    def record(self, media_in: float, media_out: float, wall_in: float, wall_out: float | None = None) -> None:
        if self.log is not None:
            self.log.add(LatencyRecord(self.name, media_in, media_out, wall_in, wall_out or time.perf_counter()))

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None


def _pts(frame: Frame | None) -> float:
    """A frame's media time, 0.0 before the first (sources in tests stream plain numbers)."""
    return frame.pts if isinstance(frame, Frame) else 0.0


class Pipeline:
    """Stages in a line, each on its own task, joined by ``FrameQueue``s (bounded for data).

    Lifecycle travels as typed frames (``framequeue``): an INTERRUPTION (``interrupt()``) overtakes the data
    queued in every queue on its way down; END_OF_STREAM follows the data before it, and at each stage the
    pipeline calls ``flush`` and sends it on, so a stage's held frames come out after everything it was given.
    Control frames the source sends come out at the end, its END_OF_STREAM last (the source is not read past it);
    a source that just runs out ends the iteration with no END_OF_STREAM yielded.
    """

    def __init__(
        self,
        stages: Sequence[Stage],
        maxsize: int = 16,
        log: LatencyLog | None = None,
        tap: Callable[[str, Frame], None] | None = None,
    ) -> None:
        """``tap(stage_name, frame)`` sees every frame every stage emits (captions, reports), in order."""
        self.stages = list(stages)
        self.maxsize = maxsize
        self.log = log or LatencyLog()
        self.tap = tap
        self._queues: list[FrameQueue] = []  # while run() is being read: each stage's input, then the reader's
        self._live = 0  # the first of them whose reader has not taken END_OF_STREAM: where an interruption enters
        for stage in self.stages:
            stage.log = self.log

    def interrupt(self, pts: float, detail: dict | None = None) -> bool:
        """Send an INTERRUPTION at ``pts`` down the pipeline ahead of every queued data frame.

        Each stage takes it as soon as it finishes the frame in hand, acts on it in ``process`` and passes it on
        to the front of the next queue; the reader of ``run`` gets it before the data still on its way. While the
        stream drains after its end, it enters at the first stage still reading. Call from the event loop running
        ``run``. False when no run is being read (there is nothing to interrupt)."""
        if not self._queues:
            return False
        self._queues[self._live].put_urgent(ControlEvent(ControlKind.INTERRUPTION, pts, detail or {}))
        return True

    async def _put(self, stage: Stage, frame: Frame, outq: FrameQueue) -> None:
        if is_end(frame):
            raise RuntimeError(
                f"stage '{stage.name}' yielded END_OF_STREAM: end of stream belongs to the pipeline, which calls "
                "the stage's flush() and sends it on; hold nothing back and return instead"
            )
        if self.tap is not None:
            self.tap(stage.name, frame)
        await outq.put(frame)

    async def _process(self, stage: Stage, item: Frame, outq: FrameQueue) -> None:
        passed_on = False
        async for out in stage.process(item):
            passed_on = passed_on or out is item
            await self._put(stage, out, outq)
        if isinstance(item, ControlEvent) and not passed_on:  # lifecycle reaches the end, whoever ignores it
            await self._put(stage, item, outq)

    async def run(self, source: AsyncIterable[Frame]) -> AsyncIterator[Frame]:
        queues = [FrameQueue(self.maxsize) for _ in range(len(self.stages) + 1)]
        sent_end: ControlEvent | None = None  # the source's own END_OF_STREAM, handed back to the reader

        async def feed() -> None:
            nonlocal sent_end
            item: Frame | None = None
            try:
                async for item in source:
                    if is_end(item):
                        sent_end = item
                        break
                    await queues[0].put(item)
            finally:
                await end_stream(queues[0], sent_end or end_of_stream(_pts(item)))

        async def drive(i: int, stage: Stage, inq: FrameQueue, outq: FrameQueue) -> None:
            item: Frame | None = None
            try:
                while not is_end(item := await inq.get()):
                    await self._process(stage, item, outq)
                self._live = i + 1  # this stage reads no more: interruptions enter behind it
                async for out in stage.flush():
                    await self._put(stage, out, outq)
            finally:  # on a failure, the end still goes down so the reader stops and surfaces it
                await end_stream(outq, item if item is not None and is_end(item) else end_of_stream(_pts(item)))

        tasks = [asyncio.create_task(feed(), name="pipeline-feed")]
        for i, stage in enumerate(self.stages):
            tasks.append(asyncio.create_task(drive(i, stage, queues[i], queues[i + 1]), name=f"stage-{stage.name}"))
        self._queues, self._live = queues, 0
        try:
            while not is_end(item := await queues[-1].get()):
                yield item
            if item is sent_end:
                yield item
            for task in tasks[1:]:  # a failed stage ended the stream early; those before it may be stuck on a put
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()
            for task in tasks[1:]:
                await task
            if tasks[0].done():
                tasks[0].result()  # surface the source's exception
        finally:
            self._queues = []
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for stage in self.stages:
                stage.close()
