"""The speech engine's side of a translated feed: ``EngineRunner``.

Audio reaches the engine at 16 kHz in ``engine_chunk_s`` blocks through a bounded queue (oldest dropped when the
engine falls ``max_engine_input_s`` behind; nothing is queued while models load, so a slow start does not turn into
permanent delay). When the speaker's audio stops arriving (a dropped network, a browser that stops sending) for
``engine_input_stall_s``, the engine is told the speech ended: the sentence it heard is translated now rather than
whenever audio comes back, and the stall is counted and logged. Each clause's lag (its first source word heard -> its
first translated audio) is measured; what the lag means for the picture is the video policy's business
(``composed.VideoPolicy``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ...audio import StreamingResampler
from ...errors import RtF2fError
from ...frames import AudioChunk, Caption, ControlEvent, ControlKind, SpeechChunk
from ...rates import ENGINE_RATE
from ..clockmap import WallClockMap
from ..limits import MediaSettings
from ..timebase import WEBRTC_RATE

if TYPE_CHECKING:
    from ...speech import SpeechEngine, SpeechModels

log = logging.getLogger(__name__)

LATE_TIMER_S = 0.25
"""A stall timer firing this much later than asked means the event loop was held up, not the speaker: wait again."""


class SpeechEngineLike(Protocol):
    """What a translated feed needs of ``rt_f2f.speech.SpeechEngine``."""

    def load(self) -> None: ...

    def run(self, audio: AsyncIterable[AudioChunk | ControlEvent]) -> AsyncIterator[SpeechChunk | Caption]: ...


EngineFactory = Callable[[str, str], SpeechEngineLike]


def speech_engine_factory(voice_conversion: bool = True) -> EngineFactory:
    """Engines from ``rt_f2f.speech``, one per (speaker, target), sharing loaded models per language pair.

    Two people speaking English to Portuguese listeners need two engines (each has its own ASR buffer, clause
    state and voice profile) but only one copy of Whisper, the translator and the voice: models load once per
    pair, on first use, and stay for the server's lifetime. ``rt_f2f.speech`` is imported on first use, so the
    server starts (and serves same-language calls) without the speech stack.
    """
    cache: dict[tuple[str, str], SpeechModels] = {}
    locks: dict[tuple[str, str], threading.Lock] = {}
    guard = threading.Lock()

    class SharedModelsEngine:
        def __init__(self, source: str, target: str) -> None:
            self.source, self.target = source, target
            self.engine: SpeechEngine | None = None

        def load(self) -> None:
            try:
                from ...speech import SpeechConfig, SpeechEngine, load_models
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

        def run(self, audio: AsyncIterable[AudioChunk | ControlEvent]) -> AsyncIterator[SpeechChunk | Caption]:
            if self.engine is None:
                raise RtF2fError("the speech engine was run before it was loaded", "call load() first")
            return self.engine.run(audio)

    return SharedModelsEngine


@dataclass
class Lag:
    """Exponential average of the speech lag: source words heard -> their translation ready to play."""

    value: float
    samples: int = 0
    last: float = 0.0

    def add(self, lag: float, weight: float = 0.3) -> None:
        self.last = lag
        self.value = lag if self.samples == 0 else (1 - weight) * self.value + weight * lag
        self.samples += 1


@dataclass(frozen=True)
class EngineStats:
    """The engine's figures: its latest lag, how much speech it produced, how much input it was given, had to drop,
    and how often that input stopped coming (``engine_input_stalls``)."""

    speech_lag_s: float | None
    speech_out_s: float
    engine_input_s: float
    engine_input_dropped: int
    engine_input_stalls: int


class EngineListener(Protocol):
    """Where an ``EngineRunner`` hands what happens: the feed that owns it."""

    def engine_running(self) -> None: ...

    def engine_lag(self, lag: float) -> None: ...

    def engine_speech(self, chunk: SpeechChunk) -> None: ...

    def engine_caption(self, caption: Caption) -> None: ...


class EngineRunner:
    """Runs one speech engine for one feed: fixed-size 16 kHz input blocks in, speech and captions out."""

    def __init__(
        self, speaker: str, source: str, target: str, settings: MediaSettings, engine_factory: EngineFactory
    ) -> None:
        self.speaker, self.source, self.target = speaker, source, target
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
        self._stall_s = settings.engine_input_stall_s
        self._input_end: float | None = None  # media time where the audio given so far ends (None: none yet)
        self._stalled = False  # the current stall has been reported
        self._clock = WallClockMap()
        self.lag = Lag(settings.initial_video_delay_s)
        self.input_s = 0.0
        self.input_dropped = 0
        self.input_stalls = 0
        self.speech_out_s = 0.0
        self.captions_out = 0

    # -- input -------------------------------------------------------------------------------------------------

    def heard(self, pts: float, wall: float) -> None:
        """The speaker's audio at ``pts`` arrived at ``wall``: what lags are measured from."""
        self._clock.add(pts, wall)

    def push(self, chunk: AudioChunk) -> None:
        """Speaker audio (48 kHz) for the engine, queued in fixed-size blocks: VAD frames never straddle a ragged
        edge."""
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
        while held.size - start >= self._block:
            block = held[start : start + self._block]
            self._enqueue(AudioChunk(block, ENGINE_RATE, self._pending_pts, source=self.speaker))
            self._pending_pts += self._block / ENGINE_RATE
            start += self._block
        rest = held[start:]
        self._pending = [rest] if rest.size else []
        self._pending_size = rest.size
        if not rest.size:
            self._pending_pts = None

    def end_input(self) -> None:
        """Let the engine finish its current clause and end cleanly."""
        self._enqueue(None)

    def clear(self) -> None:
        """Forget queued input (after a fallback or at close) and the engine."""
        self._queue.clear()

    def _enqueue(self, chunk: AudioChunk | None) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.input_dropped += 1
        if chunk is not None:
            self.input_s += chunk.duration
        self._queue.append(chunk)
        self._wake.set()

    async def _input(self) -> AsyncIterator[AudioChunk | ControlEvent]:
        while True:
            while not self._queue:
                self._wake.clear()
                if await self._stall():
                    yield ControlEvent(ControlKind.END_OF_SPEECH, self._input_end, {"reason": "input stalled"})
            item = self._queue.popleft()
            if item is None:
                return
            self._input_end, self._stalled = item.end, False
            yield item

    async def _stall(self) -> bool:
        """Wait for input; True (once per stall) when none came for ``engine_input_stall_s`` after some did.

        A timer that fires late means the event loop itself was held up (a busy CPU), and the speaker's audio may
        be waiting behind it: that wait starts again instead of cutting the sentence short.
        """
        if self._input_end is None or self._stalled:
            await self._wake.wait()
            return False
        while True:
            asked = time.monotonic()
            try:
                async with asyncio.timeout(self._stall_s):
                    await self._wake.wait()
                return False
            except TimeoutError:
                if time.monotonic() - asked > self._stall_s + LATE_TIMER_S:
                    continue
            self._stalled = True
            self.input_stalls += 1
            log.warning(
                "speaker %s: no audio for %.1f s after %.2f s of it; translating what was heard (%s->%s)",
                self.speaker, self._stall_s, self._input_end, self.source, self.target,
            )  # fmt: skip
            return True

    # -- running -----------------------------------------------------------------------------------------------

    async def run(self, listener: EngineListener) -> str | None:
        """Load the engine (on a worker thread) and run it until its input ends.

        Returns None when the engine ended by itself, or why it stopped when it failed: a failure is logged and
        reported, never raised, so a bug in a model stage cannot silence the speaker.
        """
        try:
            self._engine = self._engine_factory(self.source, self.target)
            await asyncio.to_thread(self._engine.load)
            listener.engine_running()
            async for item in self._engine.run(self._input()):
                if isinstance(item, SpeechChunk):
                    if self._measure_lag(item):
                        listener.engine_lag(self.lag.value)
                    self.speech_out_s += item.audio.duration
                    listener.engine_speech(item)
                elif isinstance(item, Caption):
                    self.captions_out += 1
                    listener.engine_caption(item)
        except RtF2fError as exc:
            log.warning("speech engine %s->%s failed: %s", self.source, self.target, exc)
            return str(exc)
        except Exception as exc:
            log.exception("speech engine %s->%s crashed", self.source, self.target)
            return f"translation stopped: {type(exc).__name__}"
        finally:
            self._engine = None
        return None

    def _measure_lag(self, chunk: SpeechChunk) -> bool:
        if not chunk.first:
            return False
        now = time.monotonic()
        heard = self._clock.wall_at(chunk.translation.pts)
        if heard is None or not 0.0 <= now - heard <= 60.0:
            return False
        self.lag.add(now - heard)
        return True

    def stats(self) -> EngineStats:
        return EngineStats(
            speech_lag_s=round(self.lag.last, 3) if self.lag.samples else None,
            speech_out_s=round(self.speech_out_s, 2),
            engine_input_s=round(self.input_s, 2),
            engine_input_dropped=self.input_dropped,
            engine_input_stalls=self.input_stalls,
        )
