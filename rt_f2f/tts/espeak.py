"""espeak-ng, the voice of last resort: robotic, but it speaks about a hundred languages with no model at all.

The Debian ``espeak-ng`` program is run once per sentence with the text on stdin (never on the command line, so
text cannot turn into options) and its WAV comes back on stdout.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from functools import lru_cache

import numpy as np

from ..errors import BackendUnavailableError, LanguageError, RtF2fError
from ..languages import LANGUAGES, validate
from .base import Synthesizer

# where espeak-ng has several voices for a language, the variety the other backends speak
PREFERRED = {"en": "en-us", "pt": "pt-br", "fr": "fr-fr", "es": "es", "zh": "cmn", "no": "nb"}
TIMEOUT_S = 30.0


def espeak_program() -> str:
    program = shutil.which("espeak-ng")
    if program is None:
        raise BackendUnavailableError(
            "the espeak-ng program is not installed", "install it (Debian/Ubuntu: apt-get install espeak-ng)"
        )
    return program


@lru_cache(maxsize=1)
def espeak_voices() -> dict[str, str]:
    """ISO 639-1 code -> espeak-ng voice, for every language rt-f2f knows that espeak-ng speaks."""
    listing = subprocess.run(
        [espeak_program(), "--voices"], capture_output=True, text=True, timeout=TIMEOUT_S, check=True
    ).stdout
    available = set()
    for line in listing.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 2:
            available.add(fields[1].lower())
    voices: dict[str, str] = {}
    for code in LANGUAGES:
        preferred = PREFERRED.get(code, code)
        if preferred in available:
            voices[code] = preferred
        elif code in available:
            voices[code] = code
        else:
            regional = sorted(v for v in available if v.split("-")[0] == code)
            if regional:
                voices[code] = regional[0]
    return voices


class EspeakSynthesizer(Synthesizer):
    """espeak-ng through its command-line program, one call per sentence."""

    name = "espeak"
    sample_rate = 22050
    clause_level = False
    pause_scale = 0.0  # espeak-ng ends every utterance in silence already
    rate_control = True

    def __init__(self, speed_wpm: int = 160) -> None:
        self.program = espeak_program()
        self.voices = espeak_voices()
        self.languages = frozenset(self.voices)
        self.speed_wpm = int(speed_wpm)

    def synthesize_phrase(self, phrase: str, language: str, speed: float = 1.0) -> np.ndarray:
        import soundfile as sf

        voice = self.voices[validate(language)]
        try:
            done = subprocess.run(
                [self.program, "--stdout", "-v", voice, "-s", str(int(round(self.speed_wpm * speed)))],
                input=phrase.encode("utf-8"),
                capture_output=True,
                timeout=TIMEOUT_S,
            )
        except subprocess.TimeoutExpired as exc:
            raise RtF2fError("espeak-ng did not finish in time", "check the espeak-ng install") from exc
        if done.returncode != 0 or not done.stdout:
            message = done.stderr.decode("utf-8", "replace").strip()
            if "voice" in message.lower():
                raise LanguageError(f"espeak-ng has no voice '{voice}': {message}", "install espeak-ng-data")
            raise RtF2fError(f"espeak-ng failed (exit {done.returncode}): {message}", "check the espeak-ng install")
        audio, rate = sf.read(io.BytesIO(done.stdout), dtype="float32")
        if rate != self.sample_rate:
            from ..audio import resample

            audio = resample(audio, rate, self.sample_rate)
        return np.asarray(audio, dtype=np.float32).reshape(-1)
