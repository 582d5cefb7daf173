"""Stages and pipelines: order, back-pressure, latency records, worker threads, and failures that surface."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from rt_f2f.framequeue import end_of_stream, is_end
from rt_f2f.frames import ControlEvent, ControlKind
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


# -- lifecycle frames: interruptions overtake queued data, end of stream keeps its place ------------------------------


class Gate(Stage):
    """Records every frame it is given; holds each data frame until its gate opens; passes everything on."""

    def __init__(self, name: str, gate: asyncio.Event) -> None:
        super().__init__()
        self.name, self.gate, self.seen, self.flushed = name, gate, [], False

    async def process(self, item):
        self.seen.append(item)
        if not isinstance(item, ControlEvent):
            await self.gate.wait()
        yield item

    async def flush(self):
        self.flushed = True  # the end of stream reached this stage
        return
        yield


async def _until(condition, spins: int = 1000) -> None:
    """Let the pipeline's tasks run until ``condition()`` holds (no wall-clock waits: nothing here sleeps)."""
    for _ in range(spins):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the pipeline never reached the expected state")


async def _collect(pipeline: Pipeline, source) -> list:
    return [x async for x in pipeline.run(source)]


async def test_an_interruption_overtakes_the_data_queued_at_the_head() -> None:
    gate, produced = asyncio.Event(), []
    stage = Gate("gated", gate)
    pipeline = Pipeline([stage], maxsize=16)
    reader = asyncio.create_task(_collect(pipeline, _source(6, produced)))
    await _until(lambda: stage.seen == [0] and len(produced) == 6)  # 1..5 and the end wait in the first queue
    assert pipeline.interrupt(2.5, {"why": "test"})
    gate.set()
    out = await asyncio.wait_for(reader, timeout=10)
    interruption = stage.seen[1]
    assert interruption == ControlEvent(ControlKind.INTERRUPTION, 2.5, {"why": "test"})
    assert stage.seen == [0, interruption, 1, 2, 3, 4, 5]  # after the frame in hand, before the queued data
    # the reader gets it before the data that was queued ahead of it (it may even pass 0 in the last queue), and
    # all the data still arrives, in order: an interruption overtakes, it does not discard
    assert out.index(interruption) < out.index(1)
    assert [x for x in out if x is not interruption] == [0, 1, 2, 3, 4, 5]


async def test_an_interruption_overtakes_the_data_queued_between_stages() -> None:
    open_gate, closed_gate, more = asyncio.Event(), asyncio.Event(), asyncio.Event()
    open_gate.set()
    first, second = Gate("first", open_gate), Gate("second", closed_gate)
    tapped: list[tuple[str, object]] = []
    pipeline = Pipeline([first, second], maxsize=16, tap=lambda stage, frame: tapped.append((stage, frame)))

    async def live():  # six frames, then a pause in the talk: the stream is still open
        async for item in _source(6):
            yield item
        await more.wait()

    reader = asyncio.create_task(_collect(pipeline, live()))
    await _until(lambda: len(first.seen) == 6 and second.seen == [0])  # 1..5 wait between the stages
    pipeline.interrupt(1.0)
    await _until(lambda: len(first.seen) == 7)
    closed_gate.set()
    more.set()
    out = await asyncio.wait_for(reader, timeout=10)
    interruption = first.seen[-1]
    assert interruption.kind == ControlKind.INTERRUPTION
    assert second.seen == [0, interruption, 1, 2, 3, 4, 5]
    assert out.index(interruption) < out.index(1)
    assert [x for x in out if x is not interruption] == [0, 1, 2, 3, 4, 5]
    assert [frame for stage, frame in tapped if stage == "first"] == [0, 1, 2, 3, 4, 5, interruption]


async def test_an_interruption_while_the_stream_drains_enters_at_the_first_stage_still_reading() -> None:
    open_gate, closed_gate = asyncio.Event(), asyncio.Event()
    open_gate.set()
    first, second = Gate("first", open_gate), Gate("second", closed_gate)
    pipeline = Pipeline([first, second], maxsize=16)
    reader = asyncio.create_task(_collect(pipeline, _source(6)))
    await _until(lambda: first.flushed and second.seen == [0])  # the first stage has ended; 1..5 wait behind it
    assert pipeline.interrupt(1.0)
    closed_gate.set()
    out = await asyncio.wait_for(reader, timeout=10)
    assert first.seen == [0, 1, 2, 3, 4, 5]
    assert second.seen == [0, second.seen[1], 1, 2, 3, 4, 5] and second.seen[1].kind == ControlKind.INTERRUPTION
    assert [x for x in out if not isinstance(x, ControlEvent)] == [0, 1, 2, 3, 4, 5]


async def test_interrupting_a_pipeline_that_is_not_running_says_so() -> None:
    pipeline = Pipeline([Pairs()])
    assert not pipeline.interrupt(0.0)
    assert [x async for x in pipeline.run(_source(0))] == []
    assert not pipeline.interrupt(0.0)  # the run is over: nothing left to interrupt


async def test_the_sources_end_of_stream_follows_its_data_and_the_flush() -> None:
    class Tail(Stage):
        name = "tail"

        async def process(self, item):
            yield item

        async def flush(self):
            yield "held"

    end, produced = end_of_stream(3.0), []

    async def source():
        for item in (0, 1, 2, end, 99):
            produced.append(item)
            yield item

    out = [x async for x in Pipeline([Tail(), Tail()]).run(source())]
    assert out == [0, 1, 2, "held", "held", end]  # each stage's flush in order, the source's end last
    assert out[-1] is end and produced[-1] is end  # the source is not read past its end


async def test_a_control_frame_a_stage_ignores_still_reaches_the_end() -> None:
    class DataOnly(Stage):
        name = "data-only"

        async def process(self, item):
            if not isinstance(item, ControlEvent):
                yield item * 10

    flush = ControlEvent(ControlKind.FLUSH, 1.0)

    async def source():
        for item in (1, flush, 2):
            yield item

    tapped: list[object] = []
    out = [x async for x in Pipeline([DataOnly()], tap=lambda _, frame: tapped.append(frame)).run(source())]
    assert out == [10, flush, 20]
    assert tapped == out


async def test_a_stage_that_ends_the_stream_itself_is_refused() -> None:
    class Ender(Stage):
        name = "ender"

        async def process(self, item):
            yield end_of_stream(0.0)

    with pytest.raises(RuntimeError, match="'ender' yielded END_OF_STREAM"):
        [x async for x in Pipeline([Ender()]).run(_source(3))]
    assert is_end(end_of_stream(0.0))
