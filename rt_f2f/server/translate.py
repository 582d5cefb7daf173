"""The seam between the call server and translation: one ``ListenerFeed`` per (speaker, listener language).

A feed takes one speaker's decoded media as it arrives and publishes what listeners of one language should get:
audio (48 kHz mono float32 blocks) on ``feed.audio``, video (``av.VideoFrame``) on ``feed.video``, and captions and
status changes through ``FeedEvents``. Listeners of that language all subscribe to the same feed, so each speech
engine runs once per (speaker, target language), however many people listen.

Two implementations: ``PassthroughFeed`` (languages match: the original media, untouched) and ``TranslatedFeed``
(a ``SpeechEngine`` turns the speech into the target language; the picture is delayed by the measured speech lag).
``LipSyncFeed`` (``lipsync_feed.py``) extends ``TranslatedFeed``: same engine input, but speech and re-mouthed
frames leave on one output clock; ``default_feed_factory(lipsync=...)`` picks it. Other feeds implement the same
four methods; pass their factory as ``feed_factory`` to the app.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import av
import numpy as np

from ..audio import StreamingResampler
from ..errors import RtF2fError
from ..frames import AudioChunk, Caption, SpeechChunk
from .limits import MediaSettings
from .media import ENGINE_RATE, WEBRTC_RATE, Relay, VideoDelayLine, WallClockMap, spawn

log = logging.getLogger(__name__)


class FeedEvents(Protocol):
    """Where a feed reports what is not media (the room routes these to the feed's listeners)."""

    def caption(self, feed: ListenerFeed, caption: Caption) -> None: ...

    def status(self, feed: ListenerFeed, state: str, detail: str = "") -> None: ...


class ListenerFeed(ABC):
    """One speaker's media, as heard by listeners of ``target`` language.

    ``push_audio`` / ``push_video`` are called on the event loop for every incoming frame and must not block
    (heavy work belongs on a worker thread); output goes to ``audio`` / ``video`` relays. ``start`` begins any
    background work, ``close`` ends all of it. One decoded frame is handed to every feed of its speaker, and one
    published frame to every listener: neither is ever changed in place (make a new frame to change pixels).
    """

    mode = "feed"

    def __init__(self, speaker: str, source: str, target: str, settings: MediaSettings, events: FeedEvents) -> None:
        self.speaker = speaker
        self.source = source
        self.target = target
        self.settings = settings
        self.events = events
        self.audio: Relay[AudioChunk] = Relay()
        self.video: Relay[av.VideoFrame] = Relay()
        self.state = "starting"

    @abstractmethod
    def push_audio(self, chunk: AudioChunk, wall: float) -> None:
        """One block of the speaker's audio: mono float32 at 48 kHz, ``chunk.pts`` on the speaker's clock."""

    @abstractmethod
    def push_video(self, frame: av.VideoFrame, wall: float) -> None:
        """One decoded frame of the speaker's camera, received at ``wall`` (``time.monotonic()``)."""

    async def start(self) -> None:
        self._set_state("ready")

    async def close(self) -> None:
        self.audio.clear()
        self.video.clear()
        self.state = "closed"

    def stats(self) -> dict[str, Any]:
        """Numbers for the listeners' overlay: at least ``delay_s``, what this feed adds to mouth-to-ear delay."""
        return {"mode": self.mode, "state": self.state, "delay_s": 0.0}

    def _set_state(self, state: str, detail: str = "") -> None:
        if self.state in ("closing", "closed"):
            return
        self.state = state
        self.events.status(self, state, detail)


class PassthroughFeed(ListenerFeed):
    """Speaker and listener share a language: the original voice and picture, with nothing added."""

    mode = "passthrough"

    def push_audio(self, chunk: AudioChunk, wall: float) -> None:
        self.audio.publish(chunk)

    def push_video(self, frame: av.VideoFrame, wall: float) -> None:
        self.video.publish(frame)


class SpeechEngineLike(Protocol):
    """What ``TranslatedFeed`` needs of ``rt_f2f.speech.SpeechEngine``."""

    def load(self) -> None: ...

    def run(self, audio: AsyncIterable[AudioChunk]) -> AsyncIterator[Any]: ...


EngineFactory = Callable[[str, str], SpeechEngineLike]


def speech_engine_factory(voice_conversion: bool = True) -> EngineFactory:
    """Engines from ``rt_f2f.speech``, one per (speaker, target), sharing loaded models per language pair.

    Two people speaking English to Portuguese listeners need two engines (each has its own ASR buffer, clause
    state and voice profile) but only one copy of Whisper, the translator and the voice: models load once per
    pair, on first use, and stay for the server's lifetime. ``rt_f2f.speech`` is imported on first use, so the
    server starts (and serves same-language calls) without the speech stack.
    """
    cache: dict[tuple[str, str], Any] = {}
    locks: dict[tuple[str, str], threading.Lock] = {}
    guard = threading.Lock()

    class SharedModelsEngine:
        def __init__(self, source: str, target: str) -> None:
            self.source, self.target = source, target
            self.engine: Any = None

        def load(self) -> None:
            try:
                from ..speech import SpeechConfig, SpeechEngine, load_models
            except ImportError as exc:
                raise RtF2fError(
                    f"the speech engine is not available ({exc})", "install rt-f2f with its speech dependencies"
                ) from exc
            config = SpeechConfig(source=self.source, target=self.target, voice_conversion=voice_conversion)
            key = (self.source, self.target)
            with guard:
                lock = locks.setdefault(key, threading.Lock())
            with lock:  # one load per pair even when two speakers start at once
                if key not in cache:
                    cache[key] = load_models(config)
            self.engine = SpeechEngine(config, models=cache[key])

        def run(self, audio: AsyncIterable[AudioChunk]) -> AsyncIterator[Any]:
            return self.engine.run(audio)

    return SharedModelsEngine


@dataclass
class _Lag:
    """Exponential average of the speech lag: source words heard -> their translation ready to play."""

    value: float
    samples: int = 0
    last: float = 0.0

    def add(self, lag: float, weight: float = 0.3) -> None:
        self.last = lag
        self.value = lag if self.samples == 0 else (1 - weight) * self.value + weight * lag
        self.samples += 1


class TranslatedFeed(ListenerFeed):
    """The speaker's speech through a ``SpeechEngine`` into ``target``; the picture delayed to match.

    Audio reaches the engine at 16 kHz in ``engine_chunk_s`` blocks through a bounded queue (oldest dropped when
    the engine falls ``max_engine_input_s`` behind; nothing is queued while models load, so a slow start does not
    turn into permanent delay). Each clause's lag (its first source word heard -> its first translated audio) is
    measured and the video delay follows its running average, clamped to the configured range.
    """

    mode = "translated"

    def __init__(
        self,
        speaker: str,
        source: str,
        target: str,
        settings: MediaSettings,
        events: FeedEvents,
        engine_factory: EngineFactory,
    ) -> None:
        super().__init__(speaker, source, target, settings, events)
        self._engine_factory = engine_factory
        self._engine: SpeechEngineLike | None = None
        self._to_engine = StreamingResampler(WEBRTC_RATE, ENGINE_RATE)
        self._block = int(settings.engine_chunk_s * ENGINE_RATE)
        self._pending: list[np.ndarray] = []
        self._pending_size = 0
        self._pending_pts: float | None = None
        self._queue: deque[AudioChunk | None] = deque(
            maxlen=max(1, int(settings.max_engine_input_s / settings.engine_chunk_s))
        )
        self._wake = asyncio.Event()
        self._clock = WallClockMap()
        self._delay = VideoDelayLine(self.video, settings.initial_video_delay_s)
        self._lag = _Lag(settings.initial_video_delay_s)
        self._out_resamplers: dict[int, StreamingResampler] = {}
        self._tasks: set[asyncio.Task] = set()
        self._engine_task: asyncio.Task | None = None
        self.engine_input_dropped = 0
        self.speech_out_s = 0.0
        self.captions_out = 0

    # -- input -------------------------------------------------------------------------------------------------

    def push_audio(self, chunk: AudioChunk, wall: float) -> None:
        self._clock.add(chunk.pts, wall)
        if self.state == "error":
            self.audio.publish(chunk)
            return
        if self.state != "running":
            return
        samples = self._to_engine.process(chunk.samples)
        if samples.size == 0:
            return
        if self._pending_pts is None:
            self._pending_pts = chunk.pts
        self._pending.append(samples)
        self._pending_size += samples.size
        if self._pending_size < self._block:
            return
        held = np.concatenate(self._pending)
        start = 0
        while held.size - start >= self._block:  # fixed-size blocks: VAD frames never straddle a ragged edge
            block = held[start : start + self._block]
            self._enqueue(AudioChunk(block, ENGINE_RATE, self._pending_pts, source=self.speaker))
            self._pending_pts += self._block / ENGINE_RATE
            start += self._block
        rest = held[start:]
        self._pending = [rest] if rest.size else []
        self._pending_size = rest.size
        if not rest.size:
            self._pending_pts = None

    def _enqueue(self, chunk: AudioChunk | None) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.engine_input_dropped += 1
        self._queue.append(chunk)
        self._wake.set()

    def push_video(self, frame: av.VideoFrame, wall: float) -> None:
        self._delay.push(frame, wall)

    async def _engine_input(self) -> AsyncIterator[AudioChunk]:
        while True:
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            item = self._queue.popleft()
            if item is None:
                return
            yield item

    # -- lifecycle ---------------------------------------------------------------------------------------------

    async def start(self) -> None:
        spawn(self._delay.run(), self._tasks, f"video-delay-{self.speaker}-{self.target}")
        self._engine_task = spawn(self._run(), self._tasks, f"engine-{self.speaker}-{self.target}")

    async def _run(self) -> None:
        self._set_state("loading")
        try:
            self._engine = self._engine_factory(self.source, self.target)
            await asyncio.to_thread(self._engine.load)
            self._set_state("running")
            async for item in self._engine.run(self._engine_input()):
                self._on_output(item)
        except RtF2fError as exc:
            log.warning("speech engine %s->%s failed: %s", self.source, self.target, exc)
            self._fall_back(str(exc))
            return
        except Exception as exc:  # a bug in a model stage must not silence the speaker: log it, fall back
            log.exception("speech engine %s->%s crashed", self.source, self.target)
            self._fall_back(f"translation stopped: {type(exc).__name__}")
            return
        if self.state == "running":
            self._fall_back("translation ended")

    def _fall_back(self, detail: str) -> None:
        """Without a working engine, listeners hear and see the original (and are told why) rather than nothing."""
        self._delay.delay = 0.0
        self._queue.clear()
        self._set_state("error", detail)

    def _on_output(self, item: Any) -> None:
        if isinstance(item, SpeechChunk):
            self._on_speech(item)
        elif isinstance(item, Caption):
            self.captions_out += 1
            self.events.caption(self, item)

    def _measure_lag(self, chunk: SpeechChunk) -> None:
        now = time.monotonic()
        if chunk.first:
            heard = self._clock.wall_at(chunk.translation.pts)
            if heard is not None and 0.0 <= now - heard <= 60.0:
                self._lag.add(now - heard)
                s = self.settings
                self._delay.delay = min(s.max_video_delay_s, max(s.min_video_delay_s, self._lag.value))

    def _on_speech(self, chunk: SpeechChunk) -> None:
        self._measure_lag(chunk)
        rate = chunk.audio.sample_rate
        resampler = self._out_resamplers.get(rate)
        if resampler is None:
            resampler = self._out_resamplers[rate] = StreamingResampler(rate, WEBRTC_RATE)
        samples = resampler.process(chunk.audio.samples)
        self.speech_out_s += samples.size / WEBRTC_RATE
        self.audio.publish(AudioChunk(samples, WEBRTC_RATE, chunk.audio.pts, source=self.speaker))

    async def close(self) -> None:
        self.state = "closing"  # from here on the feed reports nothing
        self._enqueue(None)  # lets the engine finish its current clause and end cleanly
        tasks = list(self._tasks)
        if self._engine_task is not None and not self._engine_task.done():
            await asyncio.wait([self._engine_task], timeout=1.0)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        self._delay.clear()
        self._queue.clear()
        self._engine = None
        await super().close()

    def stats(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "state": self.state,
            "delay_s": round(self._delay.delay, 3),
            "speech_lag_s": round(self._lag.last, 3) if self._lag.samples else None,
            "speech_out_s": round(self.speech_out_s, 2),
            "engine_input_dropped": self.engine_input_dropped,
            "video_dropped": self._delay.dropped,
        }


FeedFactory = Callable[[str, str, str, MediaSettings, FeedEvents], ListenerFeed]


def default_feed_factory(engine_factory: EngineFactory | None = None, lipsync: Any | None = None) -> FeedFactory:
    """Passthrough when the languages match; otherwise a ``LipSyncFeed`` when a lip-sync model is given (a
    ``lipsync_feed.LipSyncModel``, loaded once and shared by every feed), else a ``TranslatedFeed``."""
    engines = engine_factory or speech_engine_factory()

    def make(speaker: str, source: str, target: str, settings: MediaSettings, events: FeedEvents) -> ListenerFeed:
        if source == target:
            return PassthroughFeed(speaker, source, target, settings, events)
        if lipsync is not None:
            from .lipsync_feed import LipSyncFeed

            return LipSyncFeed(speaker, source, target, settings, events, engines, lipsync)
        return TranslatedFeed(speaker, source, target, settings, events, engines)

    return make
