"""One target language's translator: clauses in (control plane), translated speech out into Janus (media plane).

A worker watches the original mountpoint for the speaker's video, runs MT -> TTS on the clauses the event's shared
ASR hands it, and publishes one audio + video feed into the event's VideoRoom. Its captions go straight to its
channel's data port. Media never passes through Ray: a clause is a few words of text, and the worker's
speech travels as RTP from its own peer connection to Janus, wherever Ray placed it.

``TranslatorWorker`` is plain asyncio (tests run it in-process); ``translator_actor_class`` wraps it as a Ray async
actor. With a Wav2Lip checkpoint (``WorkerSpec.checkpoint_path``) the published video is the speaker's frames
re-mouthed for the translated speech, both on one clock (``lipsync.EventLipSync``, the call server's lip-sync feed
hosted in the worker); without one it is the speaker's own frames re-encoded beside the speech.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np

from ..framequeue import end_of_stream, is_end
from ..frames import Clause, ControlEvent, Frame, SpeechChunk, Translation
from ..priority import raise_process_to, this_thread_niceness
from ..server.buffers import LatestFrames, PcmFifo
from ..server.timebase import SAMPLES_PER_FRAME, WEBRTC_RATE
from ..server.tracks import SlotAudioTrack, SlotVideoTrack
from ..stage import Pipeline
from ..tts.select import SpeakingPace
from .janus_client import JanusSession
from .lipsync import EventLipSync
from .rtc import Publisher, Watcher, publish
from .sfu import send_datagram

log = logging.getLogger(__name__)

MAX_BACKLOG_S = 60.0  # translated speech waiting to play; beyond this the oldest is dropped (and counted)
MAX_PENDING_CLAUSES = 64
LAG_STEP_S = 0.2  # how often the worker measures its event loop's lag


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs, picklable so Ray can restart the actor from it."""

    event_id: int
    source: str
    target: str
    janus_url: str
    room: int
    original_mountpoint: int
    data_host: str
    data_port: int
    mt_model: str | None = None
    tts_backend: str | None = None
    checkpoint_path: str | None = None  # Wav2Lip (or LipGAN) generator: re-mouth the speaker's video
    lipsync_backend: str | None = None  # None: the fastest backend on the worker's node
    niceness: int = 0  # the event process's: a worker runs at its priority, not Ray's worker_niceness


@dataclass(frozen=True)
class SourceClause:
    """A clause plus the wall time (``time.time``) its last word was spoken, for mouth-to-ear figures."""

    clause: Clause
    spoken_at: float


@dataclass
class WorkerStats:
    language: str
    pid: int
    feed_id: int | None = None
    clauses_in: int = 0
    clauses_out: int = 0
    clauses_dropped: int = 0
    audio_dropped_s: float = 0.0
    delays: deque = field(default_factory=lambda: deque(maxlen=50))  # mouth-to-ear per clause, seconds
    error: str | None = None
    loop_lag_s: float = 0.0  # the longest stall of the worker's event loop since the last health call

    def summary(self) -> dict[str, Any]:
        d = list(self.delays)
        return {
            "language": self.language, "pid": self.pid, "feed_id": self.feed_id, "clauses_in": self.clauses_in,
            "clauses_out": self.clauses_out, "clauses_dropped": self.clauses_dropped,
            "audio_dropped_s": round(self.audio_dropped_s, 3), "error": self.error,
            "delay_s": round(float(np.median(d)), 3) if d else None, "delay_last_s": round(d[-1], 3) if d else None,
            "loop_lag_s": round(self.loop_lag_s, 3), "nice": this_thread_niceness(),
        }  # fmt: skip


class TranslatorWorker:
    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.stats = WorkerStats(spec.target, os.getpid())
        self.fifo = PcmFifo(int(MAX_BACKLOG_S * WEBRTC_RATE))
        self.frames: LatestFrames[av.VideoFrame] = LatestFrames(2)
        self._clauses: asyncio.Queue[SourceClause | ControlEvent] = asyncio.Queue(MAX_PENDING_CLAUSES)
        self._heard = 0.0  # where the last clause handed in ends: the input's end of stream
        self._spoken: dict[int, float] = {}
        self._session: JanusSession | None = None
        self._publisher: Publisher | None = None
        self._audio_out: SlotAudioTrack | None = None
        self._watcher: Watcher | None = None
        self._task: asyncio.Task | None = None
        self._lag_task: asyncio.Task | None = None
        self._lag_due: float | None = None  # when the lag watcher's current sleep should end
        self._models: tuple[Any, Any] | None = None
        self.lipsync: EventLipSync | None = None

    def load(self) -> None:
        """Load MT and TTS (blocking; run in a thread). A missing model raises its clear ``RtF2fError``."""
        from ..mt import get_translator
        from ..tts import get_synthesizer

        translator = get_translator(self.spec.source, self.spec.target, model=self.spec.mt_model)
        synthesizer = get_synthesizer(self.spec.target, backend=self.spec.tts_backend)
        if self.spec.checkpoint_path and self.lipsync is None:
            from ..server.feeds.lipsync_model import load_lipsync

            model = load_lipsync(self.spec.checkpoint_path, self.spec.lipsync_backend)
            self.lipsync = EventLipSync(model, self.fifo, self.frames, f"tr-{self.spec.target}")
        self._models = (translator, synthesizer)

    async def start(self) -> int:
        """Load models, publish into the room; returns the feed id (idempotent: republishes after Janus restarts)."""
        if self._models is None:
            await asyncio.to_thread(self.load)
        await self._unpublish()
        self._session = await JanusSession.create(self.spec.janus_url)
        if self.lipsync is None:
            self._watcher = Watcher(self._session, keep_audio=False, on_video=self.frames.put)
        else:  # the speaker's frames and audio go to lip-sync; self.frames gets what it renders, on time
            self.lipsync.start()
            self._watcher = Watcher(self._session, keep_audio=False, on_audio=self.lipsync.on_audio,
                                    on_video=self.lipsync.on_video)  # fmt: skip
        await self._watcher.watch(self.spec.original_mountpoint)
        self._audio_out = SlotAudioTrack(self.fifo)
        tracks = [self._audio_out, SlotVideoTrack(self.frames)]
        self._publisher = await publish(self._session, self.spec.room, f"tr-{self.spec.target}", tracks)
        self.stats.feed_id = self._publisher.feed_id
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"translate-{self.spec.target}")
        if self._lag_task is None:
            self._lag_task = asyncio.create_task(self._watch_loop(), name=f"loop-lag-{self.spec.target}")
        return self._publisher.feed_id

    def submit(self, item: SourceClause) -> bool:
        """Queue a clause; False (and counted) when the worker is this far behind."""
        self.stats.clauses_in += 1
        if self._clauses.full():
            self.stats.clauses_dropped += 1
            return False
        self._clauses.put_nowait(item)
        self._heard = max(self._heard, item.clause.end)
        return True

    def _end_input(self) -> bool:
        """END_OF_STREAM behind the queued clauses, so they are still spoken; False when the queue is full."""
        if self._clauses.full():
            return False
        self._clauses.put_nowait(end_of_stream(self._heard))
        return True

    async def _source(self) -> AsyncIterator[Clause]:
        while not is_end(item := await self._clauses.get()):
            self._spoken[item.clause.clause_id] = item.spoken_at
            yield item.clause if self.lipsync is None else self.lipsync.clause(item.clause, item.spoken_at)

    async def _run(self) -> None:
        from ..mt import MTStage
        from ..tts import TTSStage

        translator, synthesizer = self._models
        # with lip-sync the FIFO holds only what is due now (the scheduler holds the rest): SpeakingPace's estimate
        tts = TTSStage(synthesizer, pace=FifoPace(fifo=self.fifo) if self.lipsync is None else SpeakingPace())
        pipeline = Pipeline([MTStage(translator), tts], maxsize=8, tap=self._tap)
        try:
            async for item in pipeline.run(self._source()):
                if isinstance(item, SpeechChunk) and self.lipsync is None:
                    self._play(item)
                elif isinstance(item, SpeechChunk):  # lip-sync measures its own delays (health)
                    self._spoken.pop(item.translation.source.clause_id, None)
                    if self.lipsync.speech(item) and item.first:
                        self.stats.clauses_out += 1
        except Exception as exc:  # a model failing mid-talk: report it through health(), keep the feed up
            log.exception("translator %s failed", self.spec.target)
            self.stats.error = f"{type(exc).__name__}: {exc}"

    async def _watch_loop(self, step: float = LAG_STEP_S) -> None:
        """Measure how late this event loop wakes: health answers (and the published tracks) wait that long too."""
        while True:
            self._lag_due = time.monotonic() + step
            await asyncio.sleep(step)
            self.stats.loop_lag_s = max(self.stats.loop_lag_s, time.monotonic() - self._lag_due)
            self._lag_due = None

    def _tap(self, stage: str, frame: Frame) -> None:
        if isinstance(frame, Translation):
            clause = frame.source
            send_datagram(self.spec.data_host, self.spec.data_port, {
                "type": "caption", "kind": "translation", "language": frame.language, "text": frame.text[:400],
                "source": clause.text[:400], "clause_id": clause.clause_id, "start": clause.pts, "end": clause.end,
            })  # fmt: skip

    def _play(self, chunk: SpeechChunk) -> None:
        from ..audio import resample

        samples = resample(chunk.audio.samples, chunk.audio.sample_rate, WEBRTC_RATE)
        if chunk.first:
            plays_at = time.time() + len(self.fifo) / WEBRTC_RATE
            spoken = self._spoken.pop(chunk.translation.source.clause_id, None)
            if spoken is not None:
                self.stats.delays.append(plays_at - spoken)
            self.stats.clauses_out += 1
        before = self.fifo.dropped
        self.fifo.put(samples)
        self.stats.audio_dropped_s += (self.fifo.dropped - before) / WEBRTC_RATE

    def health(self) -> dict[str, Any]:
        if self._lag_due is not None:  # a stall the watcher has not woken from yet (this call ran first after it)
            stall = time.monotonic() - self._lag_due
            if stall > 0:  # counted here, so the watcher's wake-up does not count it again
                self.stats.loop_lag_s = max(self.stats.loop_lag_s, stall)
                self._lag_due += stall
        if self.lipsync is not None:
            self.stats.delays.extend(self.lipsync.played_delays())
            self.stats.audio_dropped_s = self.fifo.dropped / WEBRTC_RATE
        out = self.stats.summary()
        if self.lipsync is not None:
            out["lipsync"] = self.lipsync.stats()
        out["publishing"] = self._publisher is not None and self._publisher.pc.connectionState == "connected"
        out["backlog_s"] = round(len(self.fifo) / WEBRTC_RATE, 3)
        # the sending clock's jumps over this loop's stalls (since the last publish): listeners hear a gap there
        skipped = self._audio_out.frames_skipped if self._audio_out is not None else 0
        out["clock_skipped_s"] = round(skipped * SAMPLES_PER_FRAME / WEBRTC_RATE, 2)
        self.stats.loop_lag_s = 0.0
        return out

    async def _unpublish(self) -> None:
        for closer in (self._publisher, self._watcher, self._session):
            if closer is not None:
                try:
                    await closer.close()
                except Exception as exc:  # Janus may be gone (that is why we republish)
                    log.debug("closing before republish: %s", exc)
        self._publisher = self._watcher = self._session = None
        self.stats.feed_id = None

    async def stop(self) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
            self._lag_task = None
        if self._task is not None:
            if not self._end_input():  # too far behind to finish in time: stop now
                self._task.cancel()
            try:
                await asyncio.wait_for(self._task, 5)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
        await self._unpublish()
        if self.lipsync is not None:
            await self.lipsync.stop()


@dataclass
class FifoPace(SpeakingPace):
    """Speak faster (up to 1.3x) while the listeners are behind: a talk rarely pauses for translated speech that
    runs longer than its source. Behind is what the FIFO still holds: when the worker's event loop stalls, its track
    skips the stalled time instead of draining it, so SpeakingPace's own estimate (each chunk played in real time
    from the moment it was voiced) would read short."""

    fifo: PcmFifo | None = None

    def backlog(self) -> float:
        return len(self.fifo) / WEBRTC_RATE if self.fifo is not None else super().backlog()


def translator_actor_class():  # noqa: ANN201 - a Ray actor class, built lazily so `import ray` stays out of --help
    """The Ray actor that hosts one ``TranslatorWorker`` (an async actor: aiortc lives in its event loop)."""
    import ray

    @ray.remote(max_restarts=-1, max_task_retries=0)
    class TranslatorActor:
        def __init__(self, spec: WorkerSpec) -> None:
            left = raise_process_to(spec.niceness)
            if left > spec.niceness:  # a cluster started without RAY_worker_niceness=0, and no CAP_SYS_NICE here
                log.warning("translator %s runs at nice %d, below the event's %d: on a busy node it falls behind; "
                            "start Ray on every node with RAY_worker_niceness=0", spec.target, left, spec.niceness)  # fmt: skip
            self.worker = TranslatorWorker(spec)

        async def start(self) -> int:
            return await self.worker.start()

        async def translate(self, item: SourceClause) -> bool:
            return self.worker.submit(item)

        async def health(self) -> dict[str, Any]:
            return self.worker.health()

        async def node(self) -> str:
            return ray.get_runtime_context().get_node_id()

        async def stop(self) -> None:
            await self.worker.stop()

    return TranslatorActor
