"""Listeners of an event in a process of their own, as browsers on other machines would be.

The 30-listener event test runs its listeners in a few such processes: on one event loop, 30 aiortc peers could
not keep up once one core of two was busy. Even spread over five processes, a process's share of the one free core
stays below what its peers need, and the packets it has not yet read queue in its sockets: Janus's answers to
aioice's consent checks (one try, 0.5 s) then came 0.3-0.5 s late and later not in time at all, and after six
misses in a row aioice closed the connection (7 of 8 listeners of a process, about 35 s after they joined), while
their media still arrived in full. That lag is this stand-in's own, not the event's (a browser runs on its own
machine), so these listeners give consent checks as long as the test runs; the test asserts instead that every
listener's sound lasted until it was stopped.

Usage: ``python tests/event_listeners.py BASE OUT FIRST LANG:video|audio ...``. Prints ``up`` once its imports are
done, and waits for a line on stdin before it joins: the test starts every listener process while the translators
load, since nine processes importing aiortc at once just after they went live took both cores for seconds and the
translators' clocks skipped 7 s. Then joins each listener in turn and prints ``joined LANG``, then ``ready``; listens
until a line (or the end) on stdin; then, for listener ``FIRST + i``, writes ``OUT/<n>.npz`` (audio at 48 kHz,
arrival times, RTP timestamps) and ``OUT/<n>.json`` (language, its peer connection's state before closing, the
seconds of the sender's clock its audio spans, video frames, messages) and prints ``done``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from pathlib import Path

import aiohttp
import aioice.ice
import numpy as np

from rt_f2f.event.janus_client import JanusSession
from rt_f2f.event.rtc import Watcher

aioice.ice.CONSENT_FAILURES = 120  # checks every ~5 s: ten minutes of misses (see above)
log = logging.getLogger("listeners")


async def listen(base: str, out: Path, first: int, specs: list[str]) -> None:
    print("up", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    joined: list[tuple[str, Watcher, JanusSession]] = []
    async with aiohttp.ClientSession() as http:
        for spec in specs:
            lang, _, kind = spec.partition(":")
            async with http.post(base + "/api/event/listeners", json={"language": lang}) as resp:
                info = await resp.json()
                if resp.status != 200:
                    raise SystemExit(f"joining {lang} answered {resp.status}: {info}")
            session = await JanusSession.create(info["janus"])
            watcher = Watcher(session, video=kind == "video")
            await watcher.watch(info["mountpoint"])
            joined.append((lang, watcher, session))
            pc, n = watcher.pc, first + len(joined) - 1
            pc.on(
                "connectionstatechange",
                lambda pc=pc, n=n: log.warning("%.1f listener %d %s", time.time(), n, pc.connectionState),
            )
            print("joined", lang, flush=True)
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        states = [watcher.pc.connectionState if watcher.pc else "new" for _, watcher, _ in joined]
        await asyncio.gather(*(watcher.close() for _, watcher, _ in joined), return_exceptions=True)
        await asyncio.gather(*(session.close() for _, _, session in joined), return_exceptions=True)
    for n, ((lang, watcher, _), state) in enumerate(zip(joined, states, strict=True), first):
        got = watcher.reception
        np.savez(out / f"{n}.npz", audio=got.samples(), arrival=np.array(got.audio_arrival),
                 pts=np.array(got.audio_pts, np.int64))  # fmt: skip
        (out / f"{n}.json").write_text(json.dumps({
            "language": lang, "state": state, "media_span": got.media_span(), "video_frames": got.video_frames,
            "dropped": got.dropped, "messages": got.messages,
        }))  # fmt: skip
    print("done", flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("aioice.ice").setLevel(logging.INFO)
    asyncio.run(listen(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]))
