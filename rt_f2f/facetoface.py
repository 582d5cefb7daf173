"""The real-time face-to-face pipeline: one speaker's audio and video in; translated, lip-synced video, translated
speech and captions out, with a delay that stays bounded however the stages behave.

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
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .frames import AudioChunk, Caption, SpeechChunk, VideoFrame
from .scheduler import AVScheduler, RealtimeScheduler, ScheduledAudio, ScheduledVideo, SchedulerConfig
from .speech import INPUT_RATE, SpeechEngine, file_chunks

log = logging.getLogger(__name__)

OUTPUT_RATE = 16000  # Wav2Lip's rate; the file's AAC track is speech, so 16 kHz loses nothing that matters
VIRTUAL_STEP = 0.02


@dataclass
class FaceToFaceConfig:
    delay: float = 2.0
    max_delay: float = 4.0
    fps: float = 25.0
    realtime: bool = False
    lipsync_batch: int = 8
    max_render_lag: float = 0.5  # seconds a rendered frame may trail its playout before lip-sync is skipped


@dataclass
class FaceToFaceResult:
    """What came out, in output-clock order, and what the pipeline decided on the way."""

    frames_written: int = 0
    audio: list[np.ndarray] = field(default_factory=list)
    captions: list[Caption] = field(default_factory=list)
    first_word_end: dict[int, float] = field(default_factory=dict)  # clause id -> end of its first source word
    lipsync_rendered: int = 0
    lipsync_skipped_behind: int = 0
    lipsync_without_face: int = 0
    render_lag: list[float] = field(default_factory=list)  # realtime: wall time a frame was ready - its playout
    wall_seconds: float = 0.0
    scheduler: AVScheduler | None = None

    @property
    def audio_samples(self) -> np.ndarray:
        return np.concatenate(self.audio) if self.audio else np.zeros(0, np.float32)


class FrameSink:
    """Turns scheduled items into output: audio collected, frames re-mouthed (or not) and handed to ``write``."""

    def __init__(
        self,
        result: FaceToFaceResult,
        write: Callable[[np.ndarray], None],
        lipsync: Any | None,
        config: FaceToFaceConfig,
        origin_wall: Callable[[], float | None] = lambda: None,
    ) -> None:
        self.result = result
        self.write = write
        self.lipsync = lipsync
        self.config = config
        self.origin_wall = origin_wall
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="rt-f2f-lipsync") if lipsync else None

    def _emit(self, frames: list[VideoFrame]) -> None:
        origin = self.origin_wall()
        for frame in frames:
            if origin is not None:
                self.result.render_lag.append(time.monotonic() - (origin + frame.pts))
            self.write(frame.image)
            self.result.frames_written += 1

    def _lipsync_behind(self, pts: float) -> bool:
        origin = self.origin_wall()
        return origin is not None and time.monotonic() - (origin + pts) > self.config.max_render_lag

    def _push(self, item: ScheduledAudio | ScheduledVideo) -> list[VideoFrame]:
        stream = self.lipsync
        if isinstance(item, ScheduledAudio):
            return stream.push_audio(item.chunk.samples, item.chunk.pts, item.chunk.sample_rate)
        frame = VideoFrame(item.frame.image, item.pts, item.slot, item.frame.source)
        if self._lipsync_behind(item.pts):
            self.result.lipsync_skipped_behind += 1
            return [*stream.flush(), frame] if stream.pending else [frame]
        return stream.push_video(frame)

    async def consume(self, item: ScheduledAudio | ScheduledVideo) -> None:
        if isinstance(item, ScheduledAudio):
            self.result.audio.append(item.chunk.samples)
        if self.lipsync is None:
            if isinstance(item, ScheduledVideo):
                self._emit([VideoFrame(item.frame.image, item.pts, item.slot, item.frame.source)])
            return
        loop = asyncio.get_running_loop()
        self._emit(await loop.run_in_executor(self._executor, self._push, item))

    async def close(self) -> None:
        if self.lipsync is not None:
            loop = asyncio.get_running_loop()
            self._emit(await loop.run_in_executor(self._executor, self.lipsync.flush))
            stats = self.lipsync.stats
            self.result.lipsync_without_face = stats.frames_without_face
            self.result.lipsync_rendered = stats.frames_in - stats.frames_without_face
            self._executor.shutdown(wait=True)


class FaceToFace:
    """One speaker's direction: ``run`` takes their audio samples and frames, drives a sink, returns the result."""

    def __init__(self, engine: SpeechEngine, config: FaceToFaceConfig, lipsync: Any | None = None) -> None:
        self.engine = engine
        self.config = config
        self.lipsync = lipsync
        self.scheduler = AVScheduler(
            SchedulerConfig(
                delay=config.delay,
                max_delay=config.max_delay,
                sample_rate=OUTPUT_RATE,
                fps=config.fps,
                lead=self._lead(config, lipsync),
            )
        )

    @staticmethod
    def _lead(config: FaceToFaceConfig, lipsync: Any | None) -> float:
        """How far ahead of playout frames leave the scheduler: lip-sync holds a frame for up to its batching
        latency, and that wait must come out of the delay budget D, not be added after it."""
        default = SchedulerConfig.lead
        if lipsync is None:
            return default
        wanted = getattr(lipsync, "max_latency_s", 0.0) + default
        room = config.delay - SchedulerConfig.audio_lookahead - 0.05
        return max(default, min(wanted, room))

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

    async def _run_virtual(
        self, samples: np.ndarray, frames: Iterator[VideoFrame], write: Callable, result: FaceToFaceResult
    ) -> None:
        speech: list[SpeechChunk] = []
        async for item in self.engine.run(file_chunks(samples, INPUT_RATE, realtime=False)):
            if self._note_speech(item, result):
                speech.append(item)
        # computation-unaware: each chunk arrives when its source clause ended
        speech.sort(key=lambda c: c.translation.source.end)
        sink = FrameSink(result, write, self.lipsync, self.config)
        sched = self.scheduler
        sched.origin_wall = 0.0
        duration = samples.size / INPUT_RATE
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
        rs = RealtimeScheduler(self.scheduler)
        origin = rs.scheduler.origin_wall
        sink = FrameSink(result, write, self.lipsync, self.config, origin_wall=lambda: origin)

        async def speech() -> None:
            async for item in self.engine.run(paced_audio(samples, origin)):
                if self._note_speech(item, result):
                    rs.push_speech(item)

        async def video() -> None:
            for frame in frames:
                delay = origin + frame.pts - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                rs.push_video(frame)

        async def output() -> None:
            async for item in rs.stream():
                await sink.consume(item)

        out_task = asyncio.create_task(output(), name="f2f-output")
        try:
            await asyncio.gather(speech(), video())
            rs.close()
            await out_task
        finally:
            out_task.cancel()
            await asyncio.gather(out_task, return_exceptions=True)
        await sink.close()


async def paced_audio(samples: np.ndarray, origin: float) -> AsyncIterator[AudioChunk]:
    """Audio chunks released when they would have been heard, on the scheduler's monotonic clock."""
    async for chunk in file_chunks(samples, INPUT_RATE, realtime=True, clock=time.monotonic, t0=origin):
        yield chunk


def ear_voice_spans(result: FaceToFaceResult) -> list[float]:
    """Per placed clause: output start of its translated audio minus the end of its first source word, both on
    the session clock (the output clock runs D behind, so the span includes the target delay)."""
    if result.scheduler is None:
        return []
    spans = []
    for timing in result.scheduler.metrics().clauses:
        first = result.first_word_end.get(timing.clause_id)
        if first is not None:
            spans.append(timing.start_out - first)
    return spans
