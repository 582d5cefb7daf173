"""The event's one source ASR: the speaker's audio from Janus -> VAD -> streaming Whisper -> clauses, fanned out.

Every target language needs the same committed source words, so recognition runs once per event and each clause
goes to every active translator (``on_clause``); ASR cost does not grow with languages. The audio comes from
watching the original mountpoint like any listener does, so a speaker in a browser and ``--input FILE`` reach
the ASR the same way. Source captions (partial and final) go to the original channel's listeners.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np

from ..asr.base import Recogniser
from ..audio import StreamingResampler
from ..frames import AudioChunk, Clause, Transcript, join_words
from ..rates import ENGINE_RATE
from ..recognition import RecognitionConfig
from ..server.clockmap import WallClockMap
from ..server.timebase import WEBRTC_RATE
from ..stage import Pipeline
from .janus_client import JanusSession
from .rtc import Watcher
from .translator import SourceClause

log = logging.getLogger(__name__)

MAX_QUEUED_S = 20.0  # audio waiting for the VAD; past this the oldest is dropped and counted


class SourceASR:
    def __init__(
        self,
        recogniser: Recogniser,
        language: str,
        on_clause: Callable[[SourceClause], None],
        on_caption: Callable[[dict], None],
        recognition: RecognitionConfig | None = None,
    ) -> None:
        self.recogniser = recogniser
        self.language = language
        self.recognition = recognition or RecognitionConfig()  # the call engine's defaults
        self.on_clause = on_clause
        self.on_caption = on_caption
        self.clock = WallClockMap(horizon_s=120.0)
        self._resampler = StreamingResampler(WEBRTC_RATE, ENGINE_RATE)
        self._queue: asyncio.Queue[AudioChunk] = asyncio.Queue(int(MAX_QUEUED_S / 0.02))
        self._pts = 0.0
        self.dropped_audio_s = 0.0
        self.clauses: list[Clause] = []
        self._session: JanusSession | None = None
        self._watcher: Watcher | None = None
        self._task: asyncio.Task | None = None

    async def start(self, janus_url: str, mountpoint: int) -> None:
        """Watch the original channel (again, after a Janus restart) and run the pipeline once."""
        await self._close_watch()
        self._session = await JanusSession.create(janus_url)
        self._watcher = Watcher(self._session, keep_audio=False, on_audio=self._audio)
        await self._watcher.watch(mountpoint)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="source-asr")

    def _audio(self, samples: np.ndarray, wall: float) -> None:
        audio = self._resampler.process(samples)
        if not audio.size:
            return
        chunk = AudioChunk(audio, ENGINE_RATE, self._pts, source="speaker")
        self.clock.add(self._pts, wall - len(samples) / WEBRTC_RATE)
        self._pts += audio.size / ENGINE_RATE
        if self._queue.full():
            self.dropped_audio_s += self._queue.get_nowait().duration
        self._queue.put_nowait(chunk)

    async def _chunks(self) -> AsyncIterator[AudioChunk]:
        while True:
            yield await self._queue.get()

    async def _run(self) -> None:
        from ..recognition import recognition_stages

        stages = recognition_stages(self.recogniser, self.language, self.recognition)
        pipeline = Pipeline(stages, maxsize=32, tap=self._tap)
        try:
            async for item in pipeline.run(self._chunks()):
                if isinstance(item, Clause):
                    self.clauses.append(item)
                    spoken = self.clock.wall_at(item.end) or time.time()
                    self.on_clause(SourceClause(item, spoken))
        except Exception:
            log.exception("source ASR stopped")
            raise

    def _tap(self, stage: str, frame: Any) -> None:
        if isinstance(frame, Transcript) and stage == "asr":
            words = frame.committed + frame.partial
            if words:
                self.on_caption({"type": "caption", "kind": "source", "language": frame.language,
                                 "text": join_words(words)[:400], "final": frame.final,
                                 "start": words[0].start, "end": words[-1].end})  # fmt: skip

    async def _close_watch(self) -> None:
        for closer in (self._watcher, self._session):
            if closer is not None:
                try:
                    await closer.close()
                except Exception as exc:  # Janus may be gone: that is why we re-watch
                    log.debug("closing the source watch: %s", exc)
        self._watcher = self._session = None

    async def stop(self) -> None:
        await self._close_watch()  # first: the pipeline may wait for a Whisper call in flight
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
