"""Which voice speaks a language, and the pipeline stage that turns translations into streamed speech.

The automatic choice goes from best to most available: a Piper voice for the language if one is on this machine
(natural and fastest), else Kokoro if it speaks the language (natural, slower), else a pulled MMS-TTS voice (VITS,
one per language: Telugu, Malayalam, Tamil, Urdu...), else espeak-ng (robotic, speaks nearly everything). Loaded voices are kept per process: a voice costs hundreds of milliseconds and tens of MB to
load, and every stage or session asking for the same voice should share one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import numpy as np

from ..critical import CriticalPath
from ..errors import LanguageError, ModelMissingError, RtF2fError
from ..frames import AudioChunk, Frame, SpeechChunk, Translation
from ..languages import validate
from ..models import REGISTRY
from ..stage import Stage
from .base import Synthesizer, split_first

BACKENDS = ("piper", "kokoro", "mms", "espeak")
# a phrase is awaited when the listener will have heard everything voiced before it within this many times the last
# phrase's synthesis time: beside a Whisper decode a Kokoro phrase takes ~1.6x as long as alone (2 cores)
URGENCY_FACTOR = 1.6

_cache: dict[tuple[str, str], Synthesizer] = {}
_cache_lock = threading.Lock()


def _cached(backend: str, voice: str, make: Callable[[], Synthesizer]) -> Synthesizer:
    key = (backend, voice)
    with _cache_lock:
        synth = _cache.get(key)
        if synth is None:
            synth = _cache[key] = make()
        return synth


def _piper(language: str, voice: str | None) -> Synthesizer:
    from .piper import PiperSynthesizer, piper_voices_for

    if voice is None:
        voices = piper_voices_for(language)
        if not voices:
            known = [n for n, spec in REGISTRY.items() if n.startswith("piper-") and language in spec.languages]
            pull = f"`rt-f2f models pull {known[0]}` on a machine with internet" if known else "pull a Piper voice"
            raise ModelMissingError(
                f"no Piper voice for '{language}' is on this machine",
                f"{pull}, or give the path of a Piper voice's .onnx file (rhasspy/piper-voices)",
            )
        voice = voices[0]
    synth = _cached("piper", str(voice), lambda: PiperSynthesizer(voice))
    synth.check_language(language)
    return synth


def _kokoro(language: str, voice: str | None) -> Synthesizer:
    from .kokoro import DEFAULT_VOICE, KokoroSynthesizer

    name = voice or DEFAULT_VOICE
    with _cache_lock:
        loaded = next((s for (b, _), s in _cache.items() if b == "kokoro"), None)
    if isinstance(loaded, KokoroSynthesizer):
        synth = _cached("kokoro", name, lambda: loaded.with_voice(name))  # one model, many voices
    else:
        synth = _cached("kokoro", name, lambda: KokoroSynthesizer(voice=name))
    synth.check_language(language)
    return synth


def _mms(language: str, voice: str | None) -> Synthesizer:
    from ..models import get_store
    from .mms import MmsSynthesizer, mms_voice_name

    if voice is None:
        name = mms_voice_name(language)
        if name is None:
            raise ModelMissingError(
                f"no MMS-TTS voice for '{language}' is known", "give the folder of an mms-tts voice"
            )
        voice = str(get_store().path(name))  # a voice not pulled fails here, naming the pull command
    synth = _cached("mms", str(voice), lambda: MmsSynthesizer(voice, language))
    synth.check_language(language)
    return synth


def _espeak(language: str, voice: str | None) -> Synthesizer:
    from .espeak import EspeakSynthesizer

    synth = _cached("espeak", "", EspeakSynthesizer)
    synth.check_language(language)
    return synth


_MAKERS: dict[str, Callable[[str, str | None], Synthesizer]] = {
    "piper": _piper,
    "kokoro": _kokoro,
    "mms": _mms,
    "espeak": _espeak,
}


def candidates(language: str) -> list[str]:
    """The backends that could speak ``language`` here, best first (without loading any model)."""
    from .espeak import espeak_voices
    from .kokoro import ESPEAK_LANGS
    from .mms import mms_voice_ready
    from .piper import piper_voices_for

    code = validate(language)
    found = []
    if piper_voices_for(code):
        found.append("piper")
    if code in ESPEAK_LANGS:
        found.append("kokoro")
    if mms_voice_ready(code):
        found.append("mms")
    try:
        if code in espeak_voices():
            found.append("espeak")
    except RtF2fError:
        pass
    return found


def get_synthesizer(language: str, backend: str | None = None, voice: str | None = None) -> Synthesizer:
    """A loaded synthesizer that speaks ``language``.

    ``backend`` forces one of ``piper``, ``kokoro``, ``mms``, ``espeak``; ``voice`` picks within it (a Piper registry
    name or .onnx path; a Kokoro style name; an MMS voice folder). Without ``backend`` the best available backend is used, falling through to
    the next when one cannot load here (a missing model, a missing program).
    """
    code = validate(language)
    if voice is not None and backend is None:
        raise RtF2fError("a TTS voice was given without its backend", f"also pass the backend ({', '.join(BACKENDS)})")
    if backend is not None:
        if backend not in _MAKERS:
            raise RtF2fError(f"unknown TTS backend '{backend}'", f"choose one of {', '.join(BACKENDS)}")
        return _MAKERS[backend](code, voice)
    failures: list[str] = []
    for name in candidates(code):
        try:
            return _MAKERS[name](code, None)
        except RtF2fError as exc:
            failures.append(f"{name}: {exc.message}")
    detail = f" ({'; '.join(failures)})" if failures else ""
    raise LanguageError(
        f"no text-to-speech voice on this machine speaks '{code}'{detail}",
        "pull a Piper voice for it, or install espeak-ng",
    )


@dataclass
class TTSStats:
    """What the stage measured per clause: time to first audio, the real-time factor of synthesis, and the speaking
    rate it chose."""

    first_audio_s: list[float] = field(default_factory=list)
    compute_s: list[float] = field(default_factory=list)
    audio_s: list[float] = field(default_factory=list)
    speeds: list[float] = field(default_factory=list)

    @property
    def rtf(self) -> float:
        return float(sum(self.compute_s) / sum(self.audio_s)) if sum(self.audio_s) else float("nan")


@dataclass
class SpeakingPace:
    """Speak faster while the listener is behind, in the model itself.

    Translated speech is often longer than its source (Portuguese runs ~20-30 % longer than English), and a listener
    hears each clause after the one before it, so a backlog builds up that no later stage can take back without
    dropping speech or time-stretching it. The stage knows what it has voiced and when; assuming the listener plays
    each chunk as soon as it exists and the previous one has ended, the backlog is how long the listener still has
    to hear. The next clause is voiced at ``1 + gain * backlog`` times the voice's rate, at most ``max_speed``.
    Backends without rate control get 1.0 (the scheduler still compresses if it must).
    """

    max_speed: float = 1.3
    gain: float = 0.15  # speed-up per second of backlog: 2 s behind -> 1.3x
    clock: Callable[[], float] = time.perf_counter
    _play_end: float | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 1.0 <= self.max_speed <= 2.0 or self.gain < 0:
            raise RtF2fError(
                f"speaking pace max_speed {self.max_speed} / gain {self.gain} out of range",
                "max_speed within 1..2, gain >= 0",
            )

    def backlog(self) -> float:
        return 0.0 if self._play_end is None else max(0.0, self._play_end - self.clock())

    def speed(self) -> float:
        return min(self.max_speed, 1.0 + self.gain * self.backlog())

    def voiced(self, seconds: float) -> None:
        """``seconds`` of speech just came out."""
        now = self.clock()
        self._play_end = max(self._play_end or now, now) + seconds


class TTSStage(Stage):
    """Translation -> SpeechChunk frames, phrase by phrase, with ``first``/``last`` marking the clause's ends.

    The first chunk is stamped with the translation's source timestamp (where the speaker began the clause) and
    each later chunk follows on from the previous one's end, so the scheduler knows where in the source this
    speech belongs. Frames that are not translations (control events) pass through. One latency record per chunk:
    the first record's compute time is the time to first audio. With ``critical``, each synthesis the listener is
    waiting for (they will have heard everything voiced before it sooner than ``URGENCY_FACTOR`` times the last
    phrase's synthesis time: every first phrase when the TTS keeps up, every phrase when it is behind) is marked
    urgent, and the ASR holds its next step back while it runs.
    """

    name = "tts"

    def __init__(
        self,
        synthesizer: Synthesizer | None = None,
        backend: str | None = None,
        voice: str | None = None,
        pace: SpeakingPace | None = None,
        first_phrase_words: int | None = None,
        critical: CriticalPath | None = None,
    ):
        """``pace`` None voices every clause at the voice's own rate. ``first_phrase_words``: with a backend slow
        enough to voice clause by clause (``clause_level``), a long first phrase is cut after that many words, so a
        clause's first audio costs only a short phrase's synthesis."""
        super().__init__()
        self.first_phrase_words = first_phrase_words
        self.synthesizer = synthesizer
        self.backend = backend
        self.voice = voice
        self.pace = pace
        self.critical = critical
        # what the listener still has to hear (``pace`` tracks it already; without one, a 1.0x pace only listens)
        self._listener = pace if pace is not None else SpeakingPace(max_speed=1.0)
        self._phrase_s = float("inf")  # the last phrase's synthesis time: nothing voiced yet, so the first is awaited
        self.stats = TTSStats()

    def _urgency(self) -> AbstractContextManager[None]:
        if self.critical is None or self._listener.backlog() >= URGENCY_FACTOR * self._phrase_s:
            return nullcontext()
        return self.critical.urgent()

    def _synth_for(self, language: str) -> Synthesizer:
        if self.synthesizer is not None:
            self.synthesizer.check_language(language)
            return self.synthesizer
        return get_synthesizer(language, self.backend, self.voice)

    async def process(self, item: Frame) -> AsyncIterator[Frame]:
        if not isinstance(item, Translation):
            yield item
            return
        wall_in = time.perf_counter()
        synth = await self.in_worker(self._synth_for, item.language)
        phrases = await self.in_worker(synth.plan, item.text, item.language)
        if synth.clause_level:
            phrases = split_first(phrases, self.first_phrase_words)
        pts = item.pts
        audio_total = 0.0
        compute = 0.0
        if not phrases:
            silent = AudioChunk(np.zeros(0, np.float32), synth.sample_rate, pts, source=self.name)
            self.record(item.pts, pts, wall_in)
            yield SpeechChunk(silent, item, first=True, last=True)
            return
        speed = self.pace.speed() if self.pace is not None and synth.rate_control else 1.0
        self.stats.speeds.append(speed)
        for i in range(len(phrases)):
            started, heard = time.perf_counter(), self._listener.clock()
            with self._urgency():
                samples = await self.in_worker(synth.phrase_audio, phrases, i, item.language, speed)
            compute += time.perf_counter() - started
            self._phrase_s = self._listener.clock() - heard  # on the clock the listener's backlog is read on
            chunk = AudioChunk(samples, synth.sample_rate, pts, source=f"{self.name}:{synth.name}")
            wall_out = time.perf_counter()
            self.record(item.pts, pts, wall_in, wall_out)
            if i == 0:
                self.stats.first_audio_s.append(wall_out - wall_in)
            pts += chunk.duration
            audio_total += chunk.duration
            self._listener.voiced(chunk.duration)
            yield SpeechChunk(chunk, item, first=i == 0, last=i == len(phrases) - 1)
        self.stats.compute_s.append(compute)
        self.stats.audio_s.append(audio_total)
