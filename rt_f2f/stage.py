"""Small async processors with bounded queues, and the pipeline that wires them.

A stage turns each input frame into zero or more output frames (an async generator), so a stage may hold state
(a growing ASR buffer, a half-finished clause) and emit when it is ready. Heavy compute runs on the stage's own
worker thread: the event loop that serves WebRTC never blocks, and each model sees one thread, in order.
Queues between stages are bounded so a slow stage pushes back instead of letting delay pile up unseen.
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

T = TypeVar("T")

_END = object()


async def end_stream(queue: asyncio.Queue, end: object = _END) -> None:
    """Put the end-of-stream marker, unless this task is being cancelled.

    A cancelled producer has no reader left: its consumer is being cancelled too, so a full queue would never drain
    and the cancellation (a shutdown, a peer leaving) would wait forever on the put. A producer that ends normally
    or fails still signals the end, so the reader stops and surfaces the error."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        return
    await queue.put(end)


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
    def process(self, item: Any) -> AsyncIterator[Any]:
        """Consume one frame, yield the frames it completes."""

    async def flush(self) -> AsyncIterator[Any]:
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


class Pipeline:
    """Stages in a line, each on its own task, joined by bounded queues."""

    def __init__(
        self,
        stages: Sequence[Stage],
        maxsize: int = 16,
        log: LatencyLog | None = None,
        tap: Callable[[str, Any], None] | None = None,
    ) -> None:
        """``tap(stage_name, frame)`` sees every frame every stage emits (captions, reports), in order."""
        self.stages = list(stages)
        self.maxsize = maxsize
        self.log = log or LatencyLog()
        self.tap = tap
        for stage in self.stages:
            stage.log = self.log

    def _emit(self, stage: Stage, frame: Any) -> None:
        if self.tap is not None:
            self.tap(stage.name, frame)

    async def run(self, source: AsyncIterable[Any]) -> AsyncIterator[Any]:
        queues = [asyncio.Queue(self.maxsize) for _ in range(len(self.stages) + 1)]

        async def feed() -> None:
            try:
                async for item in source:
                    await queues[0].put(item)
            finally:
                await end_stream(queues[0])

        async def drive(stage: Stage, inq: asyncio.Queue, outq: asyncio.Queue) -> None:
            try:
                while (item := await inq.get()) is not _END:
                    async for out in stage.process(item):
                        self._emit(stage, out)
                        await outq.put(out)
                async for out in stage.flush():
                    self._emit(stage, out)
                    await outq.put(out)
            finally:
                await end_stream(outq)

        tasks = [asyncio.create_task(feed(), name="pipeline-feed")]
        for i, stage in enumerate(self.stages):
            tasks.append(asyncio.create_task(drive(stage, queues[i], queues[i + 1]), name=f"stage-{stage.name}"))
        try:
            while (item := await queues[-1].get()) is not _END:
                yield item
            for task in tasks[1:]:  # a failed stage ended the stream early; those before it may be stuck on a put
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()
            for task in tasks[1:]:
                await task
            if tasks[0].done():
                tasks[0].result()  # surface the source's exception
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for stage in self.stages:
                stage.close()
