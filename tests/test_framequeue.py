"""FrameQueue: urgent control frames overtake queued data, everything else keeps its order, data stays bounded."""

from __future__ import annotations

import asyncio

import pytest

from rt_f2f.framequeue import FrameQueue, end_of_stream, is_end, is_urgent
from rt_f2f.frames import ControlEvent, ControlKind

INTERRUPTION = ControlEvent(ControlKind.INTERRUPTION, 3.0)
FLUSH = ControlEvent(ControlKind.FLUSH, 2.0)


async def _spin(n: int = 20) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def _drain(queue: FrameQueue) -> list:
    return [await queue.get() for _ in range(queue.qsize())]


def test_only_an_interruption_is_urgent_and_only_end_of_stream_ends() -> None:
    assert is_urgent(INTERRUPTION)
    assert not any(is_urgent(ControlEvent(kind, 0.0)) for kind in ControlKind if kind != ControlKind.INTERRUPTION)
    assert is_end(end_of_stream(4.5)) and end_of_stream(4.5).pts == 4.5
    assert not is_end(FLUSH) and not is_end(INTERRUPTION)


async def test_an_interruption_put_after_queued_data_is_got_first() -> None:
    queue = FrameQueue(8)
    for i in range(5):
        await queue.put(i)
    await queue.put(INTERRUPTION)
    assert await _drain(queue) == [INTERRUPTION, 0, 1, 2, 3, 4]


async def test_flush_and_end_of_stream_stay_behind_the_data_before_them() -> None:
    queue = FrameQueue(8)
    end = end_of_stream(9.0)
    for frame in (0, FLUSH, 1, end):
        await queue.put(frame)
    await queue.put(INTERRUPTION)
    assert await _drain(queue) == [INTERRUPTION, 0, FLUSH, 1, end]


async def test_urgent_frames_keep_their_own_order() -> None:
    queue = FrameQueue(2)
    second = ControlEvent(ControlKind.INTERRUPTION, 4.0)
    await queue.put(0)
    await queue.put(INTERRUPTION)
    queue.put_urgent(second)
    assert await _drain(queue) == [INTERRUPTION, second, 0]


async def test_a_full_data_lane_holds_data_back_but_not_an_interruption() -> None:
    queue = FrameQueue(1)
    await queue.put(0)
    blocked = asyncio.create_task(queue.put(1))
    await _spin()
    assert not blocked.done()  # back-pressure: the writer waits for the reader
    await asyncio.wait_for(queue.put(INTERRUPTION), timeout=5)  # never waits behind the data
    assert await queue.get() is INTERRUPTION
    assert await queue.get() == 0
    await asyncio.wait_for(blocked, timeout=5)  # taking a data frame let the waiting writer in
    assert await queue.get() == 1


async def test_a_waiting_reader_wakes_for_either_lane() -> None:
    queue = FrameQueue(4)
    reader = asyncio.create_task(queue.get())
    await _spin()
    assert not reader.done()
    queue.put_urgent(INTERRUPTION)
    assert await asyncio.wait_for(reader, timeout=5) is INTERRUPTION
    reader = asyncio.create_task(queue.get())
    await _spin()
    await queue.put(7)
    assert await asyncio.wait_for(reader, timeout=5) == 7


def test_a_queue_without_room_for_data_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        FrameQueue(0)
