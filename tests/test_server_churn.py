"""Fifty people join and drop out of a call; the server must give back everything they held.

A resident listener stays in the room (hearing another language, so every newcomer gets a translation feed with its
engine and video delay line), while aiortc participants come in waves, send audio and video, and leave three ways:
saying goodbye on the data channel, closing the connection, or falling silent (the idle sweep removes them).
Captions reach a listener whatever its slots, so the resident takes one slot and the churners none: with everyone's
media decoded and encoded in this one Python process, a fuller fan-out backs up the resident's UDP socket enough
that aioice's 0.5 s consent checks time out and the resident's connection expires, which is not what this measures.

Afterwards the asyncio tasks and threads of the process are back to the warmed-up baseline, Python's traced
memory has not grown by more than a few megabytes, and the room's routing tables hold only the resident.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import tracemalloc

import aiohttp
import numpy as np
import pytest
from aiohttp.web import AppRunner
from fakes import FakeSpeechEngine, echo_speech

from rt_f2f.server.app import REGISTRY, ServerConfig, create_app, serve_locally
from rt_f2f.server.client import ArrayAudioTrack, PatternVideoTrack, RoomClient
from rt_f2f.server.feeds.factory import default_feed_factory
from rt_f2f.server.limits import Limits
from rt_f2f.server.rooms import Room

CHURNERS = 50
WAVE = 5
TONE = (0.2 * np.sin(2 * np.pi * 300 * np.arange(16000) / 16000)).astype(np.float32)  # what every churner says


@pytest.fixture(autouse=True)
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"])


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def own_threads() -> int:
    """Threads other than the default executor's: that pool grows lazily to a fixed size and stays (not a leak)."""
    return sum(1 for t in threading.enumerate() if not t.name.startswith("asyncio_"))


def snapshot() -> tuple[int, int, int, int]:
    gc.collect()
    return len(asyncio.all_tasks()), own_threads(), tracemalloc.get_traced_memory()[0], rss_bytes()


async def open_call(limits: Limits, resident_slots: int) -> tuple[AppRunner, str, dict, RoomClient, Room]:
    """A server with the echo engine, one room, and its resident listener (Portuguese, so speakers get translated)
    joined: (runner, base URL, the room as the API gave it, the resident, the server's side of the room)."""
    app = create_app(ServerConfig(limits=limits, web_dir=None, tick_s=0.2), default_feed_factory(echo))
    runner, base = await serve_locally(app)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/api/rooms", json={}) as r:
            room = await r.json()
    resident = RoomClient(
        base, room["id"], room["token"], name="resident", speak="pt", hear="pt", slots=resident_slots, ping_s=0.5,
        record_audio_s=0,
    )  # fmt: skip
    await resident.join()
    return runner, base, room, resident, app[REGISTRY].rooms[room["id"]]


async def settle(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the server did not settle in time"
        await asyncio.sleep(0.1)


@pytest.mark.slow  # about 50 s on two shared cores
async def test_fifty_participants_come_and_go_without_leaks():
    async with asyncio.timeout(240):  # bounded: a hang fails the test instead of the whole run
        await churn()


def echo(source: str, target: str) -> FakeSpeechEngine:
    """Made afresh per feed and kept by nobody: the leak checks measure the server, not the fakes."""
    return FakeSpeechEngine(source, target, clause_s=0.5, word_gap_s=0.0, text=("hi", "oi"), speech=echo_speech)


async def churn() -> None:
    limits = Limits(max_participants=WAVE + 1, idle_timeout_s=3.0, connect_timeout_s=5.0)
    runner, base, room, resident, server_room = await open_call(limits, resident_slots=1)
    heard_from: set[str] = set()
    ways = ("message", "close", "silence")

    async def wave(index: int, mixed: bool = False) -> None:
        clients = [
            RoomClient(
                base,
                room["id"],
                room["token"],
                name=f"c{index}-{i}",
                speak="en",
                hear="pt",
                slots=0,  # they only speak: media volume stays low enough for one shared test process (see below)
                audio=ArrayAudioTrack(TONE, 16000, loop=True),
                video=PatternVideoTrack(96, 64, 10),
                ping_s=0.5,
            )
            for i in range(WAVE)
        ]
        await asyncio.gather(*(c.join() for c in clients))
        await settle(lambda: len(server_room.participants) == WAVE + 1, 5)
        ids = {c.participant["id"] for c in clients}

        def all_heard() -> bool:  # media flows: every churner's speech comes back translated to the resident
            heard_from.update(x["speaker"] for x in resident.captions if x["speaker"] in ids)
            return ids <= heard_from

        await settle(all_heard, 10)
        resident.messages.clear()
        for i, c in enumerate(clients):
            # one way per wave, so only every third wave waits for the idle sweep; the warm-up mixes all three
            way = ways[i % len(ways)] if mixed else ways[index % len(ways)]
            if way == "message":
                await c.leave()
            elif way == "close":
                await c.close()
            else:  # falls silent: stops media and pings but keeps its connection open until the server drops it
                for task in list(c._tasks):
                    task.cancel()
                c.audio.stop()
                c.video.stop()
        await settle(lambda: len(server_room.participants) == 1, 2 * limits.idle_timeout_s + 5)
        await asyncio.gather(*(c.close() for c in clients))

    rss_trend: list[int] = []
    tracemalloc.start(1)
    try:
        await wave(0, mixed=True)  # warm-up: codecs, thread pools and caches that stay for the process's life
        await settle(lambda: set(server_room.feeds) == set(), 5)
        await asyncio.sleep(0.5)
        base_tasks, base_threads, base_traced, base_rss = snapshot()
        for index in range(1, CHURNERS // WAVE + 1):
            await wave(index)
            rss_trend.append(rss_bytes())
        await settle(lambda: len(asyncio.all_tasks()) <= base_tasks, 10)
        await settle(lambda: own_threads() <= base_threads, 10)
        await asyncio.sleep(0.5)
        tasks, threads, traced, rss = snapshot()
        routed = len(server_room.participants), len(server_room.feeds)
        print(
            f"baseline tasks {base_tasks} threads {base_threads} traced {base_traced / 2**20:.1f} MiB rss {base_rss / 2**20:.0f} MiB"
        )
        print("rss per wave (MiB):", [round(r / 2**20) for r in rss_trend])
        print(f"after    tasks {tasks} threads {threads} traced {traced / 2**20:.1f} MiB rss {rss / 2**20:.0f} MiB")
    finally:
        tracemalloc.stop()
        await resident.close()
        await runner.cleanup()

    assert len(heard_from) == CHURNERS + WAVE  # every churner really was translated for the resident
    assert tasks <= base_tasks, f"{tasks - base_tasks} asyncio tasks leaked"
    assert threads <= base_threads, f"{threads - base_threads} threads leaked"
    pool = asyncio.get_running_loop()._default_executor
    assert pool is None or sum(t.name.startswith("asyncio_") for t in threading.enumerate()) <= pool._max_workers
    assert traced - base_traced < 8 * 2**20, f"traced memory grew by {(traced - base_traced) / 2**20:.1f} MiB"
    assert rss - base_rss < 120 * 2**20, f"RSS grew by {(rss - base_rss) / 2**20:.1f} MiB"
    assert routed == (1, 0)  # only the resident is left, and it hears nobody


CAP = (640, 480)  # the cap this test configures; every churner's camera sends exactly that
CYCLES = 50


@pytest.mark.slow  # about 2-3 minutes on two shared cores
async def test_video_at_the_cap_gives_its_memory_back_over_fifty_cycles():
    """Fifty translated joins in a row, each with a camera at the server's pixel cap: the server's RSS goes back to
    within 10 % of where it was after the first one (decoder frames are big; glibc keeps freed heap unless asked)."""
    async with asyncio.timeout(600):
        await video_churn()


async def video_churn() -> None:
    limits = Limits(max_participants=2, idle_timeout_s=3.0, connect_timeout_s=5.0, max_video_pixels=CAP[0] * CAP[1])
    runner, base, room, resident, server_room = await open_call(limits, resident_slots=0)
    rss_after: list[int] = []  # after each churner left
    rss_joined: list[int] = []  # while each was in the call, translated, its camera decoded

    async def cycle(index: int) -> None:
        churner = RoomClient(
            base,
            room["id"],
            room["token"],
            name=f"c{index}",
            speak="en",
            hear="pt",
            slots=0,
            audio=ArrayAudioTrack(TONE, 16000, loop=True),
            video=PatternVideoTrack(*CAP, 5),
            ping_s=0.5,
        )
        try:
            await churner.join()
            pid = churner.participant["id"]
            server_peer = server_room.participants[pid].peer
            # its camera is decoded at the cap, and its speech comes back translated to the resident
            await settle(lambda: server_peer.video_pixels == CAP[0] * CAP[1], 15)
            await settle(lambda: any(c["speaker"] == pid for c in resident.captions), 15)
            assert server_peer.counters.oversize_frames == 0
            rss_joined.append(rss_bytes())
        finally:
            await churner.close()
        await settle(lambda: len(server_room.participants) == 1 and not server_room.feeds, 10)
        await asyncio.sleep(0.3)  # one sweep: the heap is trimmed there
        gc.collect()
        rss_after.append(rss_bytes())

    try:
        for index in range(CYCLES):
            await cycle(index)
            resident.messages.clear()
    finally:
        await resident.close()
        await runner.cleanup()
    first = rss_joined[0]
    print(f"rss with the first translated join {first / 2**20:.0f} MiB")
    print("rss after each cycle (MiB):", [round(r / 2**20) for r in rss_after])
    print("rss during each cycle (MiB):", [round(r / 2**20) for r in rss_joined])
    worst = max(rss_after)
    assert worst <= 1.1 * first, f"RSS {worst / 2**20:.0f} MiB after a cycle, {first / 2**20:.0f} with the first join"
