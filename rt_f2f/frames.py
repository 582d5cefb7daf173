"""Typed frames that flow between stages.

Every frame carries ``pts``: its media timestamp in seconds on the session clock (seconds since the session's
first sample). Stages never invent timestamps: they derive output timestamps from their inputs, so latency can be
measured at every hop and audio and video can be re-aligned at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np


@dataclass(frozen=True)
class AudioChunk:
    """Mono PCM audio, float32 in [-1, 1]."""

    samples: np.ndarray
    sample_rate: int
    pts: float
    source: str = ""

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate

    @property
    def end(self) -> float:
        return self.pts + self.duration


@dataclass(frozen=True)
class VideoFrame:
    """One RGB frame (H, W, 3) uint8."""

    image: np.ndarray
    pts: float
    index: int = 0
    source: str = ""


@dataclass(frozen=True)
class SpeechSegment:
    """A span of voiced audio found by the VAD; ``final`` is False while the speaker is still talking."""

    audio: AudioChunk
    segment_id: int
    final: bool
    trailing_silence_s: float = 0.0  # non-speech at its end as the VAD heard it: a pause, once it is long enough

    @property
    def pts(self) -> float:
        return self.audio.pts


@dataclass(frozen=True)
class Word:
    text: str
    start: float
    end: float
    probability: float = 1.0


@dataclass(frozen=True)
class Transcript:
    """Words from the ASR. ``committed`` words never change; ``partial`` words are the current guess after them."""

    committed: tuple[Word, ...]
    partial: tuple[Word, ...]
    language: str
    segment_id: int
    final: bool = False

    @property
    def pts(self) -> float:
        words = self.committed or self.partial
        return words[0].start if words else 0.0

    @property
    def text(self) -> str:
        return join_words(self.committed)


@dataclass(frozen=True)
class Clause:
    """A run of committed source words that is ready to translate (ends at punctuation, a pause or a length cap)."""

    text: str
    words: tuple[Word, ...]
    language: str
    clause_id: int

    @property
    def pts(self) -> float:
        return self.words[0].start if self.words else 0.0

    @property
    def end(self) -> float:
        return self.words[-1].end if self.words else 0.0


@dataclass(frozen=True)
class Translation:
    source: Clause
    text: str
    language: str

    @property
    def pts(self) -> float:
        return self.source.pts


@dataclass(frozen=True)
class SpeechChunk:
    """Synthesised speech for one clause; ``first``/``last`` mark the clause's first and last chunk."""

    audio: AudioChunk
    translation: Translation
    first: bool
    last: bool

    @property
    def pts(self) -> float:
        return self.audio.pts


@dataclass(frozen=True)
class Caption:
    text: str
    language: str
    start: float
    end: float
    final: bool
    kind: str = "translation"  # or "source"

    @property
    def pts(self) -> float:
        return self.start


class ControlKind(StrEnum):
    END_OF_SPEECH = "end_of_speech"
    FLUSH = "flush"
    INTERRUPTION = "interruption"
    END_OF_STREAM = "end_of_stream"


@dataclass(frozen=True)
class ControlEvent:
    kind: ControlKind
    pts: float
    detail: dict = field(default_factory=dict)


def join_words(words: tuple[Word, ...] | list[Word]) -> str:
    """Whisper words carry their own leading spaces; join them and tidy the ends."""
    return "".join(w.text for w in words).strip()


# Any frame a stage may emit or a pipeline tap may see; functions that sort frames by kind take this, not Any.
Frame = (
    AudioChunk | VideoFrame | SpeechSegment | Transcript | Clause | Translation | SpeechChunk | Caption | ControlEvent
)
