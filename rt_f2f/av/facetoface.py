"""A recorded talking video through the face-to-face pipeline (``rt-f2f translate``): one speaker's audio and video
in; translated, lip-synced video, translated speech and captions out, with a delay that stays bounded however the
stages behave.

Audio goes through the ``SpeechEngine``; its speech chunks and the source video frames meet in the ``AVScheduler``,
which places them on one output clock (input + D, never past D_max). Each output frame is re-mouthed by a
``LipSyncStream`` for the translated audio that plays with it. Lip-sync must keep pace too: a frame whose render
would land more than ``max_render_lag`` behind its playout time goes out with its original mouth instead (counted),
so a slow generator costs mouth accuracy, never delay.

Two clocks drive the same code: ``realtime`` paces inputs at their timestamps and runs the scheduler on the
monotonic clock (live figures); otherwise the speech engine runs as fast as it can and the scheduler replays its
output in virtual time with speech arriving when its source clause ended (computation-unaware figures).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator

import numpy as np

from ..frames import AudioChunk, Caption, SpeechChunk, VideoFrame
from ..lipsync.session import LipSyncSession
from ..rates import ENGINE_RATE
from ..speech import SpeechEngine, file_chunks
from .config import FaceToFaceConfig, FaceToFaceResult, build_scheduler
from .live import FrameSink, LiveFaceToFace

VIRTUAL_STEP = 0.02


class FaceToFace:
    """One speaker's direction: ``run`` takes their audio samples and frames, drives a sink, returns the result."""

    def __init__(self, engine: SpeechEngine, config: FaceToFaceConfig, lipsync: LipSyncSession | None = None) -> None:
        self.engine = engine
        self.config = config
        self.lipsync = lipsync
        self.scheduler = build_scheduler(config, lipsync.max_latency_s if lipsync is not None else None)

    def _note_speech(self, item: SpeechChunk | Caption, result: FaceToFaceResult) -> bool:
        """Captions are kept; speech returns True. Remembers each clause's first word for the ear-voice span."""
        if isinstance(item, Caption):
            result.captions.append(item)  # partial and final, both languages, in the order they happened
            return False
        clause = item.translation.source
        if clause.words and clause.clause_id not in result.first_word_end:
            result.first_word_end[clause.clause_id] = clause.words[0].end
        return True

    async def run(
        self, samples: np.ndarray, frames: Iterator[VideoFrame], write: Callable[[np.ndarray], None]
    ) -> FaceToFaceResult:
        await asyncio.to_thread(self.engine.load)
        result = FaceToFaceResult(scheduler=self.scheduler)
        start = time.perf_counter()
        if self.config.realtime:
            await self._run_realtime(samples, frames, write, result)
        else:
            await self._run_virtual(samples, frames, write, result)
        result.wall_seconds = time.perf_counter() - start
        return result

    def _sink(
        self,
        result: FaceToFaceResult,
        write: Callable[[np.ndarray], None],
        origin_wall: Callable[[], float | None] = lambda: None,
    ) -> FrameSink:
        session = self.lipsync
        build = None if session is None else lambda: session  # built already: the worker only takes it
        return FrameSink(result, lambda frame: write(frame.image), build, self.config, origin_wall=origin_wall)

    async def _run_virtual(
        self, samples: np.ndarray, frames: Iterator[VideoFrame], write: Callable, result: FaceToFaceResult
    ) -> None:
        speech: list[SpeechChunk] = []
        async for item in self.engine.run(file_chunks(samples, ENGINE_RATE, realtime=False), live=False):
            if self._note_speech(item, result):
                speech.append(item)
        # computation-unaware: each chunk arrives when its source clause ended
        speech.sort(key=lambda c: c.translation.source.end)
        sink = self._sink(result, write)
        sched = self.scheduler
        sched.origin_wall = 0.0
        duration = samples.size / ENGINE_RATE
        frame_iter = iter(frames)
        pending = next(frame_iter, None)
        i, now = 0, 0.0
        while now <= duration + self.config.max_delay:
            while pending is not None and pending.pts <= now:
                sched.push_video(pending, pending.pts)
                pending = next(frame_iter, None)
            while i < len(speech) and speech[i].translation.source.end <= now:
                sched.push_speech(speech[i], now)
                i += 1
            for item in sched.pull(now):
                await sink.consume(item)
            now += VIRTUAL_STEP
        for item in sched.flush():
            await sink.consume(item)
        await sink.close()

    async def _run_realtime(
        self, samples: np.ndarray, frames: Iterator[VideoFrame], write: Callable, result: FaceToFaceResult
    ) -> None:
        live = LiveFaceToFace(self.scheduler, self._sink(result, write, origin_wall=lambda: live.origin))
        origin = live.origin
        await live.sink.ready()  # the session is in hand from the first frame on

        async def speech() -> None:
            async for item in self.engine.run(paced_audio(samples, origin)):
                if self._note_speech(item, result):
                    live.push_speech(item)

        async def video() -> None:
            for frame in frames:
                delay = origin + frame.pts - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                live.push_video(frame)

        out_task = asyncio.create_task(live.run(), name="f2f-output")
        try:
            await asyncio.gather(speech(), video())
            live.end_input()
            await out_task
        finally:
            if not out_task.done():
                await live.abort()


async def paced_audio(samples: np.ndarray, origin: float) -> AsyncIterator[AudioChunk]:
    """Audio chunks released when they would have been heard, on the scheduler's monotonic clock."""
    async for chunk in file_chunks(samples, ENGINE_RATE, realtime=True, clock=time.monotonic, t0=origin):
        yield chunk
