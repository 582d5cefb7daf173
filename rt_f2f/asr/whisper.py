"""faster-whisper behind one small interface: float32 16 kHz audio in, timed words out.

The model loads once per (path, device, compute type) and is shared: loading costs seconds and hundreds of MB, and
CTranslate2 models may be called from several threads. Every call decodes with word timestamps, because the
streaming policy aligns successive hypotheses by time and the clause segmenter cuts at pauses.
"""

from __future__ import annotations

import threading
from functools import cache
from pathlib import Path

import numpy as np

from ..errors import LanguageError, MediaError, ModelFormatError, ModelMissingError
from ..frames import Word
from ..models import model_path
from ..rates import ENGINE_RATE
from .base import ASRResult
from .window import FULL_WINDOW, EncoderWindow

MAX_CALL_SECONDS = 4 * 3600  # the bound read_audio applies to files; a call never takes more


def normalise_language(code: str, supported: tuple[str, ...] | list[str]) -> str:
    """Whisper's code for ``code`` ("EN", "en-US" and "en_gb" all mean "en"), or a LanguageError naming the valid ones."""
    clean = str(code).strip().lower().replace("_", "-").split("-")[0]
    if clean in supported:
        return clean
    raise LanguageError(
        f"unknown language code '{code}' for Whisper",
        "use one of: " + ", ".join(sorted(supported)),
    )


class WhisperASR:
    """A loaded Whisper model; ``transcribe`` is safe to call from a stage's worker thread."""

    def __init__(self, model, name: str) -> None:
        self.model = model
        self.name = name

    @property
    def supported_languages(self) -> tuple[str, ...]:
        return tuple(self.model.supported_languages)

    def check_language(self, code: str | None) -> str | None:
        return None if code is None or code == "" else normalise_language(code, self.supported_languages)

    def transcribe(
        self,
        audio: np.ndarray,
        language: str | None = None,
        prompt: str = "",
        offset: float = 0.0,
        beam_size: int = 1,
        window: EncoderWindow = FULL_WINDOW,
    ) -> ASRResult:
        """Words of ``audio`` (mono float32, 16 kHz) with times shifted by ``offset`` seconds.

        Greedy decoding (beam 1) by default: the streaming policy calls this every second, and on a CPU a beam of 5
        costs about twice as much; offline callers ask for a wider beam. Temperature fallback is off for the same
        reason: a re-decode at higher temperature doubles the call and tends to hallucinate on short buffers.
        """
        samples = np.asarray(audio)
        if samples.ndim != 1:
            raise MediaError(f"ASR takes mono audio, got shape {samples.shape}", "mix the channels down first")
        samples = samples.astype(np.float32, copy=False)
        if samples.size > MAX_CALL_SECONDS * ENGINE_RATE:
            raise MediaError("audio longer than the 4 h limit for one call", "split the recording")
        if not np.all(np.isfinite(samples)):
            raise MediaError("audio holds NaN or infinite samples", "check the decoder feeding the recogniser")
        language = self.check_language(language)
        if samples.size < ENGINE_RATE // 10:  # under 0.1 s: nothing to hear, and Whisper would invent something
            return ASRResult((), language or "", 0.0)
        self.model.window.frames = window.frames(samples.size / ENGINE_RATE)
        try:
            segments, info = self.model.transcribe(
                samples,
                language=language,
                initial_prompt=prompt or None,
                word_timestamps=True,
                beam_size=beam_size,
                best_of=1,
                temperature=0.0,
                condition_on_previous_text=False,
                vad_filter=False,
            )
            words = tuple(  # segments is lazy: the decoding happens here, still inside the window
                Word(w.word, round(w.start + offset, 3), round(w.end + offset, 3), float(w.probability))
                for segment in segments
                for w in (segment.words or ())
            )
        finally:
            self.model.window.frames = None
        return ASRResult(words, info.language, float(info.language_probability))


@cache
def _windowed_model_class() -> type:
    """faster-whisper's WhisperModel whose encoder input is cut to the calling thread's window.

    faster-whisper builds the features of the whole call, pads each 30 s window to 3000 frames and encodes it
    (also for language detection); ``encode`` is the one place every window passes, so the padding is cut there.
    The window is per thread because one loaded model serves several stages' worker threads at once.
    """
    from faster_whisper import WhisperModel

    class WindowedWhisperModel(WhisperModel):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.window = threading.local()

        def encode(self, features: np.ndarray):
            frames = getattr(self.window, "frames", None)
            if frames is not None and features.shape[-1] > frames:
                features = np.ascontiguousarray(features[..., :frames])
            return super().encode(features)

    return WindowedWhisperModel


_CACHE: dict[tuple[str, str, str, int], WhisperASR] = {}
_CACHE_LOCK = threading.Lock()


def resolve_whisper(name_or_path: str | Path) -> Path:
    """A model folder: an existing path as given, otherwise a model-store name (e.g. "whisper-base")."""
    candidate = Path(name_or_path).expanduser()
    if not candidate.exists() and (
        candidate.is_absolute() or len(candidate.parts) > 1 or str(name_or_path)[:1] in ".~"
    ):
        raise ModelMissingError(
            f"{candidate}: no such Whisper model folder",
            "check the path, or give a model-store name such as whisper-base (see `rt-f2f models list`)",
        )
    folder = candidate if candidate.exists() else model_path(str(name_or_path))
    if not folder.is_dir() or not (folder / "model.bin").is_file():
        raise ModelFormatError(
            f"{folder} is not a CTranslate2 Whisper model folder (no model.bin)",
            "point at a faster-whisper model folder (model.bin, config.json, tokenizer.json, vocabulary.txt)",
        )
    return folder


def load_whisper(
    name_or_path: str | Path = "whisper-base", device: str = "cpu", compute_type: str = "int8", cpu_threads: int = 0
) -> WhisperASR:
    """Load (once) a faster-whisper model by store name or folder path."""
    folder = resolve_whisper(name_or_path)
    key = (str(folder.resolve()), device, compute_type, cpu_threads)
    with _CACHE_LOCK:
        if key not in _CACHE:
            try:
                model = _windowed_model_class()(
                    str(folder), device=device, compute_type=compute_type, cpu_threads=cpu_threads
                )
            except (RuntimeError, ValueError, OSError) as exc:
                raise ModelFormatError(
                    f"cannot load Whisper model from {folder}: {exc}",
                    "check the folder holds a complete faster-whisper model, and that device/compute type are "
                    "supported here (on a CPU use device='cpu', compute_type='int8')",
                ) from exc
            _CACHE[key] = WhisperASR(model, str(name_or_path))
        return _CACHE[key]
