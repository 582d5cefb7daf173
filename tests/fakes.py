"""The test doubles the suite shares: one speech engine and its model stand-ins (``Listening``, ``Echo``,
``Blocking``), one lip-sync session, and what a feed reports to.

``FakeSpeechEngine`` stands in for ``rt_f2f.speech.SpeechEngine`` (``load()``, ``run(audio)``): every ``clause_s``
seconds of input become a clause, its captions and its translated speech, so "the listener got the engine's
output, not the original" is measurable in a second without models. ``FakeEngines`` makes them for a feed factory
and keeps every one it made.

``FakeLipSyncSession`` stands in for ``rt_f2f.lipsync.stream.LipSyncStream`` as ``FrameSink`` uses it: frames come
back in batches of ``batch_size``, re-mouthed (``mouthed``: the bottom half of the picture inverted), in order.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field

import numpy as np
from audio_checks import tone

from rt_f2f.asr.base import ASRResult
from rt_f2f.critical import CriticalPath
from rt_f2f.errors import RtF2fError
from rt_f2f.frames import AudioChunk, Caption, Clause, ControlEvent, SpeechChunk, Translation, VideoFrame, Word
from rt_f2f.mt.base import Translator
from rt_f2f.rates import ENGINE_RATE
from rt_f2f.tts.base import Synthesizer

# -- time --------------------------------------------------------------------------------------------------------


class FakeClock:
    """A clock that moves only when the test moves ``now``: timing logic tested without sleeping."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# -- speech ------------------------------------------------------------------------------------------------------

Speech = Callable[[int, np.ndarray, int], tuple[np.ndarray, int]]  # (clause id, input heard, its rate) -> audio


def tone_speech(freq: float = 440.0, seconds: float = 0.5, rate: int = 24000) -> Speech:
    """Every clause is heard as the same tone."""
    return lambda clause_id, heard, heard_rate: (tone(freq, seconds, rate), rate)


def echo_speech(clause_id: int, heard: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
    """Every clause speaks back the input it was made of."""
    return heard, rate


class FakeSpeechEngine:
    """Every ``clause_s`` seconds of input become clause k: its words span the input's last ``clause_s`` seconds but
    ``word_gap_s``, in ``source``; it is released ``lags[k]`` seconds of input after its words end (default: at once) as a
    translation caption (plus source captions, and a partial one per input block, with ``source_captions``) and one
    ``SpeechChunk`` whose audio ``speech`` makes, stamped at the clause's start.

    ``fail``: "load" (``load`` raises an ``RtF2fError``) or "run" (the first release raises a ``RuntimeError``).
    Records what it was given: ``rates``, ``chunk_sizes``, ``seconds_in``, ``controls`` (control events, in order,
    after how many seconds of input), and its ``clauses``.
    """

    def __init__(
        self,
        source: str = "en",
        target: str = "pt",
        *,
        clause_s: float = 1.0,
        word_gap_s: float = 0.5,
        text: tuple[str, str] = ("hello", "olá"),
        speech: Speech | None = None,
        lags: tuple[float, ...] = (),
        source_captions: bool = False,
        fail: str = "",
    ) -> None:
        if fail not in ("", "load", "run"):
            raise ValueError(f"fail must be '', 'load' or 'run', got {fail!r}")
        self.source, self.target = source, target
        self.clause_s, self.word_gap_s, self.text = clause_s, word_gap_s, text
        speech = speech or tone_speech()
        self.speech, self.lags, self.source_captions, self.fail = speech, lags, source_captions, fail
        self.loaded = False
        self.rates: set[int] = set()
        self.chunk_sizes: set[int] = set()
        self.seconds_in = 0.0
        self.controls: list[tuple[ControlEvent, float]] = []
        self.clauses: list[Clause] = []

    def load(self) -> None:
        if self.fail == "load":
            raise RtF2fError("no translator for this pair", "pull one")
        self.loaded = True

    async def run(
        self, audio: AsyncIterable[AudioChunk | ControlEvent], live: bool = True
    ) -> AsyncIterator[SpeechChunk | Caption]:
        held: list[np.ndarray] = []
        held_s = 0.0
        waiting: list[tuple[float, int, Clause, np.ndarray, int]] = []  # (due, clause id, clause, heard, rate)
        async for chunk in audio:
            if isinstance(chunk, ControlEvent):
                self.controls.append((chunk, self.seconds_in))
                continue
            self.rates.add(chunk.sample_rate)
            self.chunk_sizes.add(chunk.samples.size)
            self.seconds_in += chunk.duration
            held.append(chunk.samples)
            held_s += chunk.duration
            if self.source_captions:
                yield Caption(self.text[0][:3], self.source, chunk.pts, chunk.end, False, "source")
            if held_s >= self.clause_s - 1e-9:
                k = len(self.clauses)
                word = Word(" " + self.text[0], chunk.end - self.clause_s, chunk.end - self.word_gap_s)
                clause = Clause(self.text[0], (word,), self.source, k)
                self.clauses.append(clause)
                lag = self.lags[k] if k < len(self.lags) else 0.0
                waiting.append((clause.end + lag, k, clause, np.concatenate(held), chunk.sample_rate))
                waiting.sort(key=lambda w: (w[0], w[1]))
                held, held_s = [], 0.0
            while waiting and waiting[0][0] <= chunk.end + 1e-9:
                _, k, clause, heard, rate = waiting.pop(0)
                if self.fail == "run":
                    raise RuntimeError("the translator broke")
                translation = Translation(clause, self.text[1], self.target)
                if self.source_captions:
                    yield Caption(clause.text, self.source, clause.pts, clause.end, True, "source")
                yield Caption(translation.text, self.target, clause.pts, clause.end, True, "translation")
                samples, speech_rate = self.speech(k, heard, rate)
                yield SpeechChunk(AudioChunk(samples, speech_rate, clause.pts), translation, True, True)


class FakeEngines:
    """An ``EngineFactory`` of ``FakeSpeechEngine``s with the same options; ``made`` holds every engine made."""

    def __init__(self, **options) -> None:
        self.options = options
        self.made: list[FakeSpeechEngine] = []

    def __call__(self, source: str, target: str) -> FakeSpeechEngine:
        self.made.append(FakeSpeechEngine(source, target, **self.options))
        return self.made[-1]


@dataclass
class Events:
    """``FeedEvents`` that keep what a feed reported: its captions and its (state, detail) changes."""

    captions: list[Caption] = field(default_factory=list)
    states: list[tuple[str, str]] = field(default_factory=list)

    def caption(self, feed: object, caption: Caption) -> None:
        self.captions.append(caption)

    def status(self, feed: object, state: str, detail: str = "") -> None:
        self.states.append((state, detail))


class Recorder:
    """A relay sink that notes when (``time.monotonic``) each item was published: ``items`` of (wall, item)."""

    def __init__(self) -> None:
        self.items: list[tuple[float, object]] = []

    def put(self, item: object) -> None:
        self.items.append((time.monotonic(), item))


# -- lip-sync ----------------------------------------------------------------------------------------------------


def mouthed(image: np.ndarray) -> np.ndarray:
    """What ``FakeLipSyncSession`` makes of a picture: its bottom half inverted (a new array)."""
    out = image.copy()
    out[image.shape[0] // 2 :] = 255 - out[image.shape[0] // 2 :]
    return out


@dataclass
class FakeSessionStats:
    """The figures ``FrameSink`` reads of a session (``lipsync.session.SessionStats``; ``StreamStats``' names)."""

    frames_in: int = 0
    frames_out: int = 0
    frames_without_face: int = 0
    batches: int = 0
    audio: list[tuple[float, int, int]] = field(default_factory=list)  # (pts, samples, rate) of each audio push


class FakeLipSyncSession:
    """A ``lipsync.session.LipSyncSession``: ``push_video`` returns nothing until ``batch_size`` frames wait, then all of them
    re-mouthed; ``flush`` returns what waits. ``fail_at_batch`` n raises on the n-th batch (1-based); ``faceless`` frame indices come back unchanged (and are
    counted, as a real session counts frames without a face); ``batch_seconds[n]`` is how long batch n (0-based) takes
    (later batches take no time). Records the thread each call ran on."""

    def __init__(
        self,
        batch_size: int = 4,
        max_latency_s: float = 0.3,
        fail_at_batch: int | None = None,
        faceless: frozenset[int] = frozenset(),
        batch_seconds: tuple[float, ...] = (),
    ) -> None:
        self.batch_size, self.max_latency_s = batch_size, max_latency_s
        self.batch_seconds = batch_seconds
        self.fail_at_batch, self.faceless = fail_at_batch, faceless
        self.stats = FakeSessionStats()
        self.threads: set[str] = set()
        self._waiting: list[VideoFrame] = []

    def push_audio(self, samples: np.ndarray, pts: float, sample_rate: int) -> list[VideoFrame]:
        self.threads.add(threading.current_thread().name)
        self.stats.audio.append((pts, int(np.asarray(samples).size), sample_rate))
        return []

    def push_video(self, frame: VideoFrame) -> list[VideoFrame]:
        self.threads.add(threading.current_thread().name)
        self.stats.frames_in += 1
        self._waiting.append(frame)
        return self._batch() if len(self._waiting) >= self.batch_size else []

    def flush(self) -> list[VideoFrame]:
        self.threads.add(threading.current_thread().name)
        return self._batch() if self._waiting else []

    def _batch(self) -> list[VideoFrame]:
        if self.stats.batches < len(self.batch_seconds):
            time.sleep(self.batch_seconds[self.stats.batches])
        self.stats.batches += 1
        if self.fail_at_batch is not None and self.stats.batches >= self.fail_at_batch:
            raise RuntimeError(f"lip-sync batch {self.stats.batches} failed")
        out = []
        for frame in self._waiting:
            if frame.index in self.faceless:
                self.stats.frames_without_face += 1
                out.append(frame)
            else:
                out.append(VideoFrame(mouthed(frame.image), frame.pts, frame.index, frame.source))
        self._waiting = []
        self.stats.frames_out += len(out)
        return out


# -- models ------------------------------------------------------------------------------------------------------


class Listening:
    """A recogniser that hears one word per 0.5 s of audio and remembers how much audio each call got."""

    def __init__(self) -> None:
        self.heard_s: list[float] = []

    def check_language(self, code: str | None) -> str | None:
        return code

    def transcribe(self, audio: np.ndarray, offset: float = 0.0, **options: object) -> ASRResult:
        """As ``asr.base.Recogniser``; the options (language, prompt, beam, window) do not matter here."""
        self.heard_s.append(audio.size / ENGINE_RATE)
        end = offset + audio.size / ENGINE_RATE
        words = tuple(Word(f" w{i}", offset + 0.5 * i, offset + 0.5 * i + 0.4) for i in range(int(2 * (end - offset))))
        return ASRResult(words, "en", 1.0)


class Echo(Translator):
    """A translator (en -> pt) that gives back what it was given."""

    source, target = "en", "pt"

    def translate(self, texts: list[str]) -> list[str]:
        return list(texts)


class Blocking(Synthesizer):
    """Voices each phrase as 0.5 s of tone once ``go`` is set, taking ``cost_s`` of ``clock``'s time; records whether
    the gate was up while it worked."""

    name, sample_rate, languages = "fake", 8000, frozenset({"pt"})

    def __init__(
        self, gate: CriticalPath | None = None, fail: bool = False, clock: FakeClock | None = None, cost_s: float = 0.0
    ) -> None:
        self.gate, self.fail, self.clock, self.cost_s = gate, fail, clock, cost_s
        self.go = threading.Event()
        self.go.set()
        self.started = threading.Event()
        self.busy_during: list[bool] = []

    def synthesize_phrase(self, phrase: str, language: str) -> np.ndarray:
        self.started.set()
        self.busy_during.append(self.gate is not None and self.gate.busy)
        assert self.go.wait(10), "the test never let the synthesis finish"
        if self.fail:
            raise RuntimeError("the voice crashed")
        if self.clock is not None:
            self.clock.now += self.cost_s
        return np.full(self.sample_rate // 2, 0.1, np.float32)


async def wait_until(
    predicate: Callable[[], object], timeout: float, poll: float = 0.05, explain: Callable[[], object] | None = None
) -> None:
    """Let the event loop run until ``predicate()`` holds; AssertionError after ``timeout`` seconds, its message
    ending with ``explain()`` (what was seen instead) when given."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time" + (f": {explain()}" if explain else ""))
        await asyncio.sleep(poll)
