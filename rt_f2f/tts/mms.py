"""MMS-TTS voices (Meta's Massively Multilingual Speech, VITS), for languages no Piper or Kokoro voice speaks.

A voice is a ``facebook/mms-tts-<iso3>`` folder in the ``transformers`` layout: ``config.json`` (``model_type``
"vits"), ``model.safetensors``, and the character tokenizer (``vocab.json``, ``tokenizer_config.json``,
``special_tokens_map.json``). The model store lists the voices for Hindi, Telugu, Malayalam, Tamil and Urdu
(``rt-f2f models pull mms-tts-tel``...). Needs ``transformers`` (the ``mms`` extra); a voice whose tokenizer wants
romanised input (``is_uroman``) also needs the ``uroman`` package. Voices are 16 kHz.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import numpy as np

from ..errors import BackendUnavailableError, ModelFormatError, ModelMissingError
from ..languages import validate
from ..models import get_store
from ..models.registry import REGISTRY
from .base import Synthesizer

log = logging.getLogger(__name__)
REQUIRED_FILES = ("config.json", "vocab.json", "tokenizer_config.json")


def mms_voice_name(language: str) -> str | None:
    """The model store's MMS voice for ``language``, or None where there is none."""
    code = validate(language)
    return next((n for n, s in REGISTRY.items() if n.startswith("mms-tts-") and code in s.languages), None)


def mms_voice_ready(language: str) -> bool:
    """Whether the store's MMS voice for ``language`` is on this machine (pulled, or pointed at by its variable)."""
    name = mms_voice_name(language)
    return name is not None and get_store().status(name).where in ("env", "cache")


def check_mms_folder(folder: Path) -> dict:
    """The folder's config, after checking it holds a VITS model and its tokenizer (naming what is missing)."""
    if not folder.is_dir():
        raise ModelMissingError(
            f"MMS voice folder {folder} does not exist", "pull one, e.g. `rt-f2f models pull mms-tts-tel`"
        )
    missing = [f for f in REQUIRED_FILES if not (folder / f).is_file()]
    if not any((folder / f).is_file() for f in ("model.safetensors", "pytorch_model.bin")):
        missing.append("model.safetensors")
    if missing:
        raise ModelFormatError(f"MMS voice folder {folder} lacks {', '.join(missing)}", "pull the voice again")
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelFormatError(f"unreadable {folder / 'config.json'}: {exc}", "pull the voice again") from exc
    if not isinstance(config, dict) or config.get("model_type") != "vits":
        kind = config.get("model_type") if isinstance(config, dict) else type(config).__name__
        raise ModelFormatError(f"{folder} holds a {kind!r} model, not a VITS (MMS-TTS) voice", "give an mms-tts folder")
    return config


class MmsSynthesizer(Synthesizer):
    """One MMS-TTS VITS voice (one language) through ``transformers``' ``VitsModel``."""

    name = "mms"
    clause_level = False
    pause_scale = 1.0

    def __init__(self, folder: str | Path, language: str, seed: int = 0) -> None:
        if importlib.util.find_spec("transformers") is None:
            raise BackendUnavailableError(
                "MMS-TTS voices need the transformers package", "pip install 'rt-f2f[mms]' (or transformers)"
            )
        import torch
        from transformers import VitsModel, VitsTokenizer

        path = Path(folder)
        config = check_mms_folder(path)
        self.tokenizer = VitsTokenizer.from_pretrained(str(path), local_files_only=True)
        if getattr(self.tokenizer, "is_uroman", False) and importlib.util.find_spec("uroman") is None:
            raise BackendUnavailableError(
                f"the MMS voice in {path} reads romanised text and needs the uroman package", "pip install uroman"
            )
        try:
            self.model = VitsModel.from_pretrained(str(path), local_files_only=True).eval()
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelFormatError(f"cannot load the MMS voice in {path}: {exc}", "pull the voice again") from exc
        self.folder = path
        self.sample_rate = int(config.get("sampling_rate", 16000))
        self.languages = frozenset({validate(language)})
        self._torch = torch
        self.seed = seed

    def synthesize_phrase(self, phrase: str, language: str) -> np.ndarray:
        torch = self._torch
        inputs = self.tokenizer(phrase, return_tensors="pt")
        if inputs["input_ids"].shape[1] == 0 or not inputs["input_ids"].ne(self.tokenizer.pad_token_id).any():
            log.warning("MMS voice %s cannot read any character of %r: phrase left silent", self.folder.name, phrase)
            return np.zeros(0, np.float32)
        # VITS samples its durations and latents: a fixed seed per call keeps a phrase's audio the same every time
        with torch.inference_mode(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            waveform = self.model(**inputs).waveform[0]
        return np.clip(waveform.float().numpy(), -1.0, 1.0).astype(np.float32)

    def describe(self) -> str:
        return f"mms voice {self.folder.name} ({self.sample_rate} Hz; {', '.join(sorted(self.languages))})"
