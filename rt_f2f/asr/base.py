"""What a speech recogniser is to the rest of rt-f2f: audio at the engine rate in, timed words out.

``ASRStage``, event mode's source ASR and the speech engine's models hold a ``Recogniser``, not a Whisper model,
so a test can hand them a fake and another backend can stand in without touching them. ``whisper.WhisperASR`` is
the one real backend today.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..frames import Word, join_words
from .window import FULL_WINDOW, EncoderWindow


@dataclass(frozen=True)
class ASRResult:
    """One call's words (times in seconds, shifted by the call's offset) and the language they were heard in."""

    words: tuple[Word, ...]
    language: str
    language_probability: float

    @property
    def text(self) -> str:
        return join_words(self.words)


class Recogniser(Protocol):
    """A loaded recogniser; ``transcribe`` is called from a stage's worker thread, so it must be thread-safe."""

    def check_language(self, code: str | None) -> str | None:
        """The recogniser's code for ``code`` (None: detect per segment), or a LanguageError naming valid ones."""
        ...

    def transcribe(
        self,
        audio: np.ndarray,
        language: str | None = None,
        prompt: str = "",
        offset: float = 0.0,
        beam_size: int = 1,
        window: EncoderWindow = FULL_WINDOW,
    ) -> ASRResult:
        """Words of ``audio`` (mono float32 at ``rates.ENGINE_RATE``); ``prompt`` is the text said just before."""
        ...
