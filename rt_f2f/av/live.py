"""The live A/V driver: ``FrameSink`` turns scheduled items into output (audio at once, frames re-mouthed in order
on one worker thread), ``LiveFaceToFace`` paces the scheduler on the monotonic clock and feeds a sink.

Both are drivers around synchronous cores (``scheduler.AVScheduler``, the lip-sync session): they own the clock, the
worker thread and the in-flight queue, and decide nothing about placement. Lip-sync must keep pace: a frame whose
render would land more than ``max_render_lag`` behind its playout time goes out with its original mouth instead
(counted), so a slow generator costs mouth accuracy, never delay.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ..frames import AudioChunk, SpeechChunk, VideoFrame
from ..lipsync.session import LipSyncSession
from ..priority import lower_this_thread
from .config import FaceToFaceConfig, FaceToFaceResult
from .realtime import RealtimeScheduler
from .schedule import ScheduledAudio, ScheduledVideo
from .scheduler import AVScheduler


class FrameSink:
    """Turns scheduled items into output: audio handed on at once, frames re-mouthed (or not) and handed on in order.

    Lip-sync runs on one worker thread per sink, and audio never waits for it: in a call the listener's audio keeps
    flowing while a batch renders. Whether a frame is re-mouthed is decided when it is scheduled, from what the
    worker already holds and what a batch has been costing: a frame whose render would land more than
    ``max_render_lag`` after its playout skips the worker and goes out with its original mouth (counted), still in
    order behind the frames being rendered (or, with ``provisional_frames``, at once: the receiver orders them).
    ``build_lipsync`` makes the ``LipSyncSession`` (a ``LipSyncStream``); it is called once, on the worker thread,
    where the session's face detector then lives, and frames pass through with their own mouth until it is built
    (``ready`` waits for that). None: no lip-sync, frames pass straight through. A session built elsewhere is
    handed in as ``lambda: session``.
    """

    def __init__(
        self,
        result: FaceToFaceResult,
        on_video: Callable[[VideoFrame], None],
        build_lipsync: Callable[[], LipSyncSession] | None,
        config: FaceToFaceConfig,
        origin_wall: Callable[[], float | None] = lambda: None,
        on_audio: Callable[[AudioChunk], None] | None = None,
    ) -> None:
        self.result = result
        self.on_video = on_video
        self.on_audio = on_audio or (lambda chunk: result.audio.append(chunk.samples))
        self.enabled = build_lipsync is not None
        self._build = build_lipsync
        self.lipsync: LipSyncSession | None = None  # set on the worker thread, once built
        self.config = config
        self.origin_wall = origin_wall
        self._executor = (
            ThreadPoolExecutor(1, thread_name_prefix="rt-f2f-lipsync", initializer=lower_this_thread)
            if self.enabled
            else None
        )  # off the speech path: a late mouth is skipped, never waited for
        self._inflight: deque[tuple[asyncio.Future, bool]] = deque()  # (output, from the worker), in order
        self._error: BaseException | None = None
        self._in_worker = 0  # frames handed to the worker and not out yet
        self.overflow = 0  # items not handed to a worker that was max_inflight behind (live only)
        self._batch_cost = 0.0  # running average of one generator batch's wall time (render + paste), in seconds
        self._cost_measured_at = 0.0  # time.monotonic() of the last batch measured (set on the worker thread)
        # build it now: frames pass through until it is ready
        self._built = self._executor.submit(self._stream) if self._executor is not None else None

    async def ready(self) -> None:
        """Wait until the lip-sync session is built (raises what building it raised); at once without lip-sync."""
        if self._built is not None:
            await asyncio.wrap_future(self._built)

    # -- worker side ---------------------------------------------------------------------------------------------

    def _stream(self) -> LipSyncSession:
        if self.lipsync is None:
            self.lipsync = self._build()  # on the worker thread
        return self.lipsync

    def _timed(self, call: Callable[[LipSyncSession], list[VideoFrame]]) -> list[VideoFrame]:
        """Run a stream call on the worker, learning what a batch costs from the calls that ran one."""
        stream = self._stream()
        batches, start = stream.stats.batches, time.perf_counter()
        out = call(stream)
        ran = stream.stats.batches - batches
        if ran:
            cost = (time.perf_counter() - start) / ran
            fresh = self._batch_cost != 0.0 and not self._cost_stale()
            self._batch_cost = 0.7 * self._batch_cost + 0.3 * cost if fresh else cost
            self._cost_measured_at = time.monotonic()
        return out

    def _cost_stale(self) -> bool:
        """Has no batch been measured for ``render_cost_stale_s``? A cost that predicts every frame late is never
        measured again (nothing is rendered), so a stale one is treated as unknown: one batch is rendered to learn
        it afresh. With provisional frames that batch costs the listener nothing (its frames went out already)."""
        return time.monotonic() - self._cost_measured_at > self.config.render_cost_stale_s

    @staticmethod
    def _push(stream: LipSyncSession, item: ScheduledAudio | VideoFrame) -> list[VideoFrame]:
        if isinstance(item, ScheduledAudio):
            return stream.push_audio(item.chunk.samples, item.chunk.pts, item.chunk.sample_rate)
        return stream.push_video(item)

    # -- loop side -----------------------------------------------------------------------------------------------

    def _emit(self, frames: list[VideoFrame]) -> None:
        origin = self.origin_wall()
        for frame in frames:
            if origin is not None:
                self.result.render_lag.append(time.monotonic() - (origin + frame.pts))
            self.on_video(frame)
            self.result.frames_written += 1

    def _too_late(self, pts: float) -> bool:
        """Would this frame, re-mouthed, land more than ``max_render_lag`` after its playout? It waits for the
        batches already queued, for its own batch to fill (frames come at ``fps``, at most the stream's latency
        bound), then for its batch's render."""
        origin = self.origin_wall()
        if origin is None:
            return False
        if self.lipsync is None:
            return True  # still being built
        size, latency, ahead = self.lipsync.batch_size, self.lipsync.max_latency_s, self._in_worker
        cost = 0.0 if self._cost_stale() else self._batch_cost
        if cost == 0.0 and ahead >= size:
            return True  # what a batch costs is not known (any more): one batch at a time until it is
        fill = min((size - ahead % size - 1) / self.config.fps, latency)
        ready = time.monotonic() + (ahead // size + 1) * cost + fill
        return ready - (origin + pts) > self.config.max_render_lag

    async def _submit(self, call: Callable[[LipSyncSession], list[VideoFrame]]) -> bool:
        """Queue a stream call on the worker; False (live, with the worker too far behind) when it was not."""
        while len(self._inflight) >= self.config.max_inflight:
            if self.origin_wall() is not None:
                self.overflow += 1
                return False
            await asyncio.wait([self._inflight[0][0]])
            self._drain()
        future = asyncio.get_running_loop().run_in_executor(self._executor, self._timed, call)
        self._inflight.append((future, True))
        future.add_done_callback(self._drain)
        return True

    def _pass(self, frame: VideoFrame) -> None:
        """A frame that is not re-mouthed: out now, or in its turn behind the frames still being rendered (audio
        still queued for the worker holds no frame back: with no frame in the worker it can complete none)."""
        if not self._in_worker or self.config.provisional_frames:
            self._emit([frame])
            return
        done = asyncio.get_running_loop().create_future()
        done.set_result([frame])
        self._inflight.append((done, False))

    def _drain(self, _: asyncio.Future | None = None) -> None:
        """Emit finished work in order (one worker thread finishes its part in that order)."""
        while self._inflight and self._inflight[0][0].done():
            future, from_worker = self._inflight.popleft()
            if future.cancelled():
                continue
            if future.exception() is not None:
                self._error = self._error or future.exception()
                continue
            frames = future.result()
            if from_worker:
                self._in_worker -= len(frames)
            self._emit(frames)

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    async def consume(self, item: ScheduledAudio | ScheduledVideo) -> None:
        self._raise_error()
        frame = None
        if isinstance(item, ScheduledAudio):
            self.on_audio(item.chunk)
        else:
            frame = VideoFrame(item.frame.image, item.pts, item.slot, item.frame.source)
        if not self.enabled:
            if frame is not None:
                self._emit([frame])
            return
        if frame is None:
            await self._submit(lambda stream: self._push(stream, item))
        elif self._too_late(frame.pts):
            self.result.lipsync_skipped_behind += 1
            if self._in_worker:  # frames waiting for a batch that this one will not fill: render them now
                await self._submit(lambda stream: stream.flush())
            self._pass(frame)
        else:
            if self.config.provisional_frames:
                self.on_video(frame)  # as it is, until (unless) its re-mouthed version comes in time
            self._in_worker += 1
            if not await self._submit(lambda stream: self._push(stream, frame)):
                self._in_worker -= 1
                self.result.lipsync_skipped_behind += 1
                if not self.config.provisional_frames:
                    self._pass(frame)
        self._drain()

    def counts(self) -> dict[str, int]:
        """Lip-sync figures so far (read while the worker runs: plain counters, a frame or two behind at most)."""
        stats = self.lipsync.stats if self.lipsync is not None else None
        without_face = stats.frames_without_face if stats else 0
        return {
            "rendered": (stats.frames_out - without_face) if stats else 0,
            "skipped_late": self.result.lipsync_skipped_behind,
            "without_face": without_face,
        }

    async def close(self, flush: bool = True) -> None:
        """Finish (``flush``: render and emit every queued frame) or abandon the queued work; stop the worker."""
        if self._executor is None:
            return
        if flush:
            if self._in_worker:
                await self._submit(lambda stream: stream.flush())
            if self._inflight:
                await asyncio.wait([future for future, _ in self._inflight])
            self._drain()
        if self.lipsync is not None:
            stats = self.lipsync.stats
            self.result.lipsync_without_face = stats.frames_without_face
            self.result.lipsync_rendered = stats.frames_in - stats.frames_without_face
        executor, self._executor = self._executor, None
        self._inflight.clear()
        await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
        if flush:
            self._raise_error()


class LiveFaceToFace:
    """The realtime half that the file pipeline and the call server share: inputs are pushed as they arrive (on the
    session clock), the scheduler is paced on the monotonic clock, and a ``FrameSink`` hands audio and re-mouthed
    frames on, both on the one output clock (output pts X plays at wall ``origin + X``).

    ``run`` drives the output until ``end_input`` (then plays out what is held and flushes lip-sync) or until it
    is cancelled; ``abort`` stops it without playing out, for a call that ends.
    """

    def __init__(self, scheduler: AVScheduler, sink: FrameSink, tick: float = 0.01) -> None:
        self.realtime = RealtimeScheduler(scheduler, tick=tick)
        self.scheduler = scheduler
        self.sink = sink
        self._task: asyncio.Task | None = None

    @property
    def origin(self) -> float:
        """Wall time (``time.monotonic``) of session time 0; output pts X plays at ``origin + X``."""
        return float(self.scheduler.origin_wall)

    def push_speech(self, chunk: SpeechChunk) -> None:
        self.realtime.push_speech(chunk)

    def push_video(self, frame: VideoFrame) -> None:
        self.realtime.push_video(frame)

    def note_audio(self, pts: float, wall: float) -> None:
        """Source audio arrivals: video drift is measured against the audio clock, the session's master."""
        self.scheduler.note_audio_clock(pts, wall)

    async def run(self) -> None:
        self._task = asyncio.current_task()
        async for item in self.realtime.stream():
            await self.sink.consume(item)
        await self.sink.close()

    def end_input(self) -> None:
        self.realtime.close()

    async def abort(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.sink.close(flush=False)
