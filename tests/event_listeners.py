"""Listeners of an event in a process of their own, as browsers on other machines would be.

The 30-listener event test runs its listeners in a few such processes. On one event loop, 30 aiortc peers could
not keep up once one core of two was busy: the loop lagged past aioice's 0.5 s consent timeout six times in a row,
and 23 of 30 connections closed mid-talk (each 33-42 s after it joined) while Janus and the translators were fine.

Usage: ``python tests/event_listeners.py BASE OUT FIRST LANG:video|audio ...``. Joins each listener in turn and
prints ``joined LANG``, then ``ready``; listens until a line (or the end) on stdin; then, for listener ``FIRST + i``,
writes ``OUT/<n>.npz`` (audio at 48 kHz, arrival times, RTP timestamps) and ``OUT/<n>.json`` (language, its peer
connection's state before closing, the seconds of the sender's clock its audio spans, video frames, messages) and
prints ``done``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import aiohttp
import numpy as np

from rt_f2f.event.janus_client import JanusSession
from rt_f2f.event.rtc import Watcher


async def listen(base: str, out: Path, first: int, specs: list[str]) -> None:
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
    asyncio.run(listen(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]))
