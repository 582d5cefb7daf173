"""What makes a voice sound like its speaker, measured live from the speaker's first seconds of speech.

A ``SpeakerProfile`` is fed the speaker's audio as it arrives and becomes ready after ``min_speech_s`` of speech
(webrtcvad decides what is speech). It holds what voice conversion needs:

- pitch: mean and spread of log F0 over voiced frames (WORLD's DIO + StoneMask: fast enough to run live; the
  statistics are robust to the odd octave error because they are taken within an octave of the median);
- timbre: the mean spectral envelope (WORLD CheapTrick, log, each frame level-normalised) from 0 to 8 kHz, which
  carries the speaker's vocal-tract resonances, voice quality and microphone;
- vocal-tract length: the median third formant (Praat's Burg tracker via parselmouth); F3 depends mostly on the
  length of the vocal tract and little on the vowel, so the ratio of two voices' F3 is the frequency-warping
  factor that maps one onto the other;
- identity: the d-vector (``embedding``), to measure conversion and to drive neural converters.

Audio is analysed in blocks of ``block_s`` as it comes and only running sums are kept, so enrolment costs the same
per second whenever it happens and memory is bounded; after ``max_speech_s`` of speech the profile stops listening.
The same accumulator measures TTS output on the converter's side, so both voices are described the same way.
"""

from __future__ import annotations

import importlib.util
import math
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..audio import resample
from ..errors import MediaError, RtF2fError
from ..frames import AudioChunk
from .embedding import Embedder, get_embedder

ANALYSIS_RATE = 16000
ENVELOPE_BINS = 513  # CheapTrick's bins at 16 kHz (FFT 1024): 0..8 kHz in 15.6 Hz steps
ENVELOPE_GRID = np.linspace(0.0, ANALYSIS_RATE / 2, ENVELOPE_BINS)
FRAME_PERIOD_MS = 5.0
F0_FLOOR = 60.0
F0_CEIL = 600.0
ENVELOPE_F0_FLOOR = 71.0  # WORLD's default: keeps CheapTrick's FFT at 1024 up to 24 kHz (60 Hz would double it)
VAD_FRAME = 480  # 30 ms at 16 kHz
_HIST_EDGES = np.log(F0_FLOOR) + np.arange(0, math.log2(F0_CEIL / F0_FLOOR) * 96 + 2) * (math.log(2) / 96)

_pyworld: types.ModuleType | None = None


def pyworld() -> types.ModuleType:
    """The WORLD vocoder bindings.

    pyworld 0.3.5's ``__init__`` imports ``pkg_resources`` only to read its own version, and setuptools >= 81 no
    longer ships ``pkg_resources``; when that import fails the compiled extension is loaded directly (it has no
    other Python dependency than numpy).
    """
    global _pyworld
    if _pyworld is None:
        try:
            with warnings.catch_warnings():  # pyworld's __init__ warns about its pkg_resources import
                warnings.simplefilter("ignore", UserWarning)
                import pyworld as module
        except ModuleNotFoundError as exc:
            if exc.name != "pkg_resources":
                raise
            spec = importlib.util.find_spec("pyworld")
            if spec is None or not spec.submodule_search_locations:
                raise
            folder = Path(list(spec.submodule_search_locations)[0])
            binary = next(folder.glob("pyworld*.so"), None) or next(folder.glob("pyworld*.pyd"), None)
            if binary is None:
                raise
            ext_spec = importlib.util.spec_from_file_location("pyworld.pyworld", binary)
            module = importlib.util.module_from_spec(ext_spec)
            ext_spec.loader.exec_module(module)
        _pyworld = module
    return _pyworld


@dataclass(frozen=True)
class WorldFrames:
    """WORLD analysis of one stretch of audio."""

    f0: np.ndarray  # (T,) Hz, 0 where unvoiced
    times: np.ndarray  # (T,) seconds
    envelope: np.ndarray  # (T, bins) power spectral envelope
    sample_rate: int

    @property
    def freqs(self) -> np.ndarray:
        return np.linspace(0.0, self.sample_rate / 2, self.envelope.shape[1])


def world_analysis(samples: np.ndarray, sample_rate: int) -> WorldFrames:
    pw = pyworld()
    x = np.ascontiguousarray(samples, dtype=np.float64)
    f0, times = pw.dio(x, sample_rate, f0_floor=F0_FLOOR, f0_ceil=F0_CEIL, frame_period=FRAME_PERIOD_MS)
    f0 = pw.stonemask(x, f0, times, sample_rate)
    sp = pw.cheaptrick(x, f0, times, sample_rate, f0_floor=ENVELOPE_F0_FLOOR)
    return WorldFrames(f0, times, sp, sample_rate)


def third_formants(samples: np.ndarray, sample_rate: int, frames: WorldFrames) -> np.ndarray:
    """F3 (Hz) every 10 ms where WORLD found voicing.

    The tracker's ceiling follows Praat's convention (5000 Hz for low voices, 5500 Hz for high ones), chosen from
    the voice's own median F0, so a woman's F3 is not mistaken for her F4 nor a man's F3 for his F2.
    """
    import parselmouth

    voiced = frames.f0 > 0
    if voiced.sum() < 10 or len(samples) < 0.1 * sample_rate:
        return np.zeros(0)
    ceiling = 5500.0 if np.median(frames.f0[voiced]) >= 160.0 else 5000.0
    ceiling = min(ceiling, sample_rate / 2 - 100.0)
    sound = parselmouth.Sound(np.asarray(samples, dtype=np.float64), sampling_frequency=sample_rate)
    formant = sound.to_formant_burg(time_step=0.01, max_number_of_formants=5, maximum_formant=ceiling)
    values = []
    period = FRAME_PERIOD_MS / 1000.0
    for t in formant.ts():
        i = int(round(t / period))
        if 0 <= i < len(voiced) and voiced[i]:
            f3 = formant.get_value_at_time(3, t)
            if np.isfinite(f3):
                values.append(f3)
    return np.asarray(values, dtype=np.float64)


def level_normalised_envelope(frames: WorldFrames, mask: np.ndarray) -> np.ndarray:
    """Log envelopes of the masked frames on the common 0..8 kHz grid, each with its mean level removed."""
    if not mask.any():
        return np.zeros((0, ENVELOPE_BINS))
    logsp = np.log(frames.envelope[mask] + 1e-12)
    freqs = frames.freqs
    if logsp.shape[1] != ENVELOPE_BINS or freqs[-1] != ENVELOPE_GRID[-1]:
        logsp = np.stack([np.interp(ENVELOPE_GRID, freqs, row) for row in logsp])
    return logsp - logsp.mean(axis=1, keepdims=True)


@dataclass(frozen=True)
class VoiceStats:
    """A voice in numbers: what conversion maps from and to."""

    log_f0_mean: float
    log_f0_std: float
    envelope: np.ndarray  # (513,) mean level-normalised log envelope, 0..8 kHz (natural log)
    f3_hz: float  # median third formant; nan when unknown
    speech_seconds: float
    voiced_seconds: float
    embedding: np.ndarray | None = None

    @property
    def f0_hz(self) -> float:
        return float(math.exp(self.log_f0_mean))


@dataclass
class VoiceAccumulator:
    """Running sums behind ``VoiceStats``: add analyses as audio comes, read statistics at any time."""

    f0_hist: np.ndarray = field(default_factory=lambda: np.zeros(len(_HIST_EDGES) - 1))
    envelope_sum: np.ndarray = field(default_factory=lambda: np.zeros(ENVELOPE_BINS))
    envelope_frames: int = 0
    f3_values: list[np.ndarray] = field(default_factory=list)
    embedding_sum: np.ndarray = field(default_factory=lambda: np.zeros(256))
    embedding_weight: float = 0.0
    speech_seconds: float = 0.0

    def add(self, frames: WorldFrames, f3: np.ndarray, seconds: float) -> None:
        voiced = frames.f0 > 0
        if voiced.any():
            self.f0_hist += np.histogram(np.log(frames.f0[voiced]), bins=_HIST_EDGES)[0]
            env = level_normalised_envelope(frames, voiced)
            self.envelope_sum += env.sum(axis=0)
            self.envelope_frames += env.shape[0]
        if f3.size:
            self.f3_values.append(f3)
        self.speech_seconds += seconds

    def add_embedding(self, embedding: np.ndarray, weight: float) -> None:
        self.embedding_sum += embedding * weight
        self.embedding_weight += weight

    @property
    def voiced_seconds(self) -> float:
        return float(self.f0_hist.sum()) * FRAME_PERIOD_MS / 1000.0

    def stats(self) -> VoiceStats | None:
        """Current statistics, or None before any voiced frame was seen."""
        total = self.f0_hist.sum()
        if total == 0:
            return None
        centres = (_HIST_EDGES[:-1] + _HIST_EDGES[1:]) / 2
        cdf = np.cumsum(self.f0_hist) / total
        median = centres[int(np.searchsorted(cdf, 0.5))]
        keep = np.abs(centres - median) <= math.log(2)  # within an octave: drops DIO's halving/doubling errors
        weights = self.f0_hist * keep
        mean = float((centres * weights).sum() / weights.sum())
        std = float(math.sqrt(max(((centres - mean) ** 2 * weights).sum() / weights.sum(), 1e-6)))
        f3 = float(np.median(np.concatenate(self.f3_values))) if self.f3_values else float("nan")
        embedding = None
        if self.embedding_weight > 0:
            embedding = (self.embedding_sum / (np.linalg.norm(self.embedding_sum) + 1e-12)).astype(np.float32)
        return VoiceStats(
            log_f0_mean=mean,
            log_f0_std=std,
            envelope=self.envelope_sum / max(self.envelope_frames, 1),
            f3_hz=f3,
            speech_seconds=self.speech_seconds,
            voiced_seconds=self.voiced_seconds,
            embedding=embedding,
        )


class SpeakerProfile:
    """A speaker's voice, enrolled incrementally from live audio.

    ``feed`` any amount of audio at any rate; non-speech is dropped, speech is analysed in ``block_s`` blocks.
    ``ready`` turns True once ``min_speech_s`` of speech has been analysed (with some voicing in it). ``embedder``
    False skips the d-vector (the converter's own measurement of TTS output needs none).
    """

    def __init__(
        self,
        min_speech_s: float = 4.0,
        max_speech_s: float = 30.0,
        block_s: float = 2.0,
        embedder: Embedder | bool = True,
        vad_mode: int = 2,
    ) -> None:
        import webrtcvad

        if not 0.5 <= block_s <= min_speech_s <= max_speech_s <= 600:
            raise RtF2fError(
                f"invalid enrolment settings (block {block_s} s, min {min_speech_s} s, max {max_speech_s} s)",
                "need 0.5 <= block_s <= min_speech_s <= max_speech_s <= 600",
            )
        self.min_speech_s = min_speech_s
        self.max_speech_s = max_speech_s
        self.block_s = block_s
        self.embedder = get_embedder() if embedder is True else (embedder or None)
        self._vad = webrtcvad.Vad(vad_mode)
        self._vad_rest = np.zeros(0, np.float32)
        self._pending: list[np.ndarray] = []
        self._pending_len = 0
        self.acc = VoiceAccumulator()
        self._stats: VoiceStats | None = None

    @classmethod
    def from_audio(cls, samples: np.ndarray, sample_rate: int, **kwargs) -> SpeakerProfile:
        """Enrol from a recording at once (everything it holds, up to ``max_speech_s`` of speech)."""
        kwargs.setdefault("min_speech_s", 1.0)
        kwargs.setdefault("block_s", 1.0)
        profile = cls(**kwargs)
        profile.feed(samples, sample_rate)
        profile.finish()
        if profile.stats is None:
            raise MediaError("no voiced speech found to enrol the speaker from", "give a recording of them talking")
        return profile

    @property
    def stats(self) -> VoiceStats | None:
        return self._stats

    @property
    def speech_seconds(self) -> float:
        return self.acc.speech_seconds + self._pending_len / ANALYSIS_RATE

    @property
    def ready(self) -> bool:
        s = self._stats
        return s is not None and s.speech_seconds >= self.min_speech_s and s.voiced_seconds >= 0.5

    @property
    def full(self) -> bool:
        return self.acc.speech_seconds >= self.max_speech_s

    def feed_chunk(self, chunk: AudioChunk) -> bool:
        return self.feed(chunk.samples, chunk.sample_rate)

    def feed(self, samples: np.ndarray, sample_rate: int) -> bool:
        """Take more of the speaker's audio; returns ``ready``."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if sample_rate <= 0:
            raise MediaError(f"sample rate must be positive, got {sample_rate}", "pass the audio's real rate")
        if self.full:
            return self.ready
        if not np.isfinite(x).all():
            raise MediaError("audio holds NaN or infinite samples", "check the audio source")
        step = int(sample_rate)  # one second at a time: a long feed stops as soon as the profile is full
        for start in range(0, x.size, step):
            self._take(resample(x[start : start + step], sample_rate, ANALYSIS_RATE))
            if self.full:
                break
        return self.ready

    def _take(self, x: np.ndarray) -> None:
        x = np.concatenate([self._vad_rest, x])
        n = x.size // VAD_FRAME
        self._vad_rest = x[n * VAD_FRAME :]
        pcm = (np.clip(x[: n * VAD_FRAME], -1, 1) * 32767).astype(np.int16)
        for i in range(n):
            frame = pcm[i * VAD_FRAME : (i + 1) * VAD_FRAME]
            if self._vad.is_speech(frame.tobytes(), ANALYSIS_RATE):
                self._pending.append(x[i * VAD_FRAME : (i + 1) * VAD_FRAME])
                self._pending_len += VAD_FRAME
                if self._pending_len >= self.block_s * ANALYSIS_RATE:
                    self._analyse_pending()
                    if self.full:
                        return

    def finish(self) -> bool:
        """Analyse speech still waiting for a full block (end of a recording); returns ``ready``."""
        if self._pending_len >= 0.5 * ANALYSIS_RATE:
            self._analyse_pending()
        return self.ready

    def _analyse_pending(self) -> None:
        block = np.concatenate(self._pending)
        self._pending, self._pending_len = [], 0
        frames = world_analysis(block, ANALYSIS_RATE)
        self.acc.add(frames, third_formants(block, ANALYSIS_RATE, frames), block.size / ANALYSIS_RATE)
        if self.embedder is not None:
            weight = self.embedder.window_count(block.size)
            self.acc.add_embedding(self.embedder.embed(block, ANALYSIS_RATE), weight)
        self._stats = self.acc.stats()
