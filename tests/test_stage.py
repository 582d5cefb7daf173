"""Stages and pipelines: order, back-pressure, latency records, worker threads, and failures that surface."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from rt_f2f.stage import LatencyLog, Pipeline, Stage


class Double(Stage):
    name = "double"

    async def process(self, item):
        wall_in = time.perf_counter()
        thread = await self.in_worker(lambda: threading.current_thread().name)
        self.record(item, item, wall_in)
        yield (item * 2, thread)


class Pairs(Stage):
    """Holds state: emits pairs, and the odd one out at flush."""

    name = "pairs"

    def __init__(self) -> None:
        super().__init__()
        self.held = []

    async def process(self, item):
        self.held.append(item[0])
        if len(self.held) == 2:
            yield tuple(self.held)
            self.held = []

    async def flush(self):
        if self.held:
            yield tuple(self.held)


async def _source(n: int, produced: list[int] | None = None):
    for i in range(n):
        if produced is not None:
            produced.append(i)
        yield i


async def test_pipeline_keeps_order_flushes_and_records_latency() -> None:
    log = LatencyLog()
    out = [x async for x in Pipeline([Double(), Pairs()], log=log).run(_source(5))]
    assert out == [(0, 2), (4, 6), (8,)]
    records = log.for_stage("double")
    assert [r.media_in for r in records] == [0, 1, 2, 3, 4]
    assert all(r.compute >= 0 for r in records)
    assert log.summary()["double"]["count"] == 5


async def test_heavy_work_runs_off_the_event_loop_thread() -> None:
    out = [x async for x in Pipeline([Double()]).run(_source(3))]
    assert {thread for _, thread in out} == {"rt-f2f-double_0"}
    assert threading.current_thread().name not in {thread for _, thread in out}


async def test_bounded_queues_push_back_on_the_source() -> None:
    class Slow(Stage):
        name = "slow"

        async def process(self, item):
            await asyncio.sleep(0.01)
            yield item

    produced: list[int] = []
    pipe = Pipeline([Slow()], maxsize=2)
    gen = pipe.run(_source(100, produced))
    first = await gen.__anext__()
    assert first == 0
    # the source can only be a couple of queues ahead of the slow consumer, never the whole stream
    assert len(produced) <= 2 + 2 + 2
    await gen.aclose()


async def test_a_failing_stage_surfaces_its_error() -> None:
    class Boom(Stage):
        name = "boom"

        async def process(self, item):
            if item == 2:
                raise ValueError("bad frame")
            yield item

    with pytest.raises(ValueError, match="bad frame"):
        [x async for x in Pipeline([Boom(), Pairs()]).run(_source(5))]


async def _forever():
    i = 0
    while True:
        yield i
        i += 1


async def test_cancelling_the_reader_ends_while_the_source_waits_on_a_full_queue() -> None:
    """A shutdown (the camera's --duration, a peer leaving) cancels the reader while a slow stage has left the
    source blocked on a full input queue: the cancellation must finish, not wait forever to put end-of-stream."""
    release = asyncio.Event()

    class Stuck(Stage):
        name = "stuck"

        async def process(self, item):
            await release.wait()
            yield item

    async def read() -> list[int]:
        return [x async for x in Pipeline([Stuck()], maxsize=2).run(_forever())]

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.05)  # the source fills the queue and waits on its put
    reader.cancel()
    done, _ = await asyncio.wait({reader}, timeout=10)
    assert reader in done and reader.cancelled()


async def test_a_failing_stage_surfaces_its_error_while_an_earlier_stage_waits_on_a_full_queue() -> None:
    class Copy(Stage):
        name = "copy"

        async def process(self, item):
            yield item

    class Boom(Stage):
        name = "boom"

        async def process(self, item):
            raise ValueError("bad frame")
            yield item

    async def read() -> list[int]:
        return [x async for x in Pipeline([Copy(), Boom()], maxsize=1).run(_forever())]

    reader = asyncio.create_task(read())
    done, _ = await asyncio.wait({reader}, timeout=10)
    assert reader in done
    with pytest.raises(ValueError, match="bad frame"):
        reader.result()
