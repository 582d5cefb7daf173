"""Pitch-preserving time compression for translated speech that has to catch up with its deadline.

When the backlog of translated speech would push it past the session's bound (D_max), the scheduler plays it a
little faster instead of dropping words. Resampling would raise the voice's pitch (a 1.25x chipmunk effect), so the
speech is time-scaled with WSOLA (waveform-similarity overlap-add, from ``audiotsm``): it re-times the signal in
~40 ms frames, aligning each frame on the waveform so pitch and timbre stay put.

Speech arrives in chunks (streaming TTS) and the scheduler may change the rate between chunks, so the stretcher is
streaming: one instance per clause, fed chunk by chunk, flushed at the clause's end. Its output length is exact
(sum of ``len(chunk) / effective_rate``) because the scheduler plans the output timeline in samples.
"""

from __future__ import annotations

import numpy as np

from ..errors import MediaError, RtF2fError

MIN_RATE = 1.0
MAX_RATE = 2.0  # beyond 2x WSOLA speech is hard to follow; the scheduler's default bound is 1.25x


def _check_rate(rate: float) -> float:
    rate = float(rate)
    if not (MIN_RATE <= rate <= MAX_RATE):
        raise RtF2fError(
            f"time-compression rate {rate!r} is outside [{MIN_RATE}, {MAX_RATE}]",
            "use a rate between 1.0 (no compression) and 2.0; 1.25 keeps speech natural",
        )
    return rate


def _as_mono(samples: np.ndarray) -> np.ndarray:
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise MediaError(f"expected mono audio (1-D samples), got shape {x.shape}", "mix the audio down to one channel")
    return x


class StreamingTimeStretch:
    """Time-compress one clause's audio chunk by chunk; output duration = input duration / rate.

    At rate 1.0 audio passes through untouched (WSOLA is not an identity, so it is only switched on once a rate
    above 1 is asked for; from then on it stays on for the rest of the clause to keep the signal continuous).
    """

    def __init__(self, sample_rate: int, rate: float = 1.0, frame_seconds: float = 0.04) -> None:
        if sample_rate <= 0:
            raise RtF2fError(f"sample rate must be positive, got {sample_rate}", "pass the audio's real sample rate")
        self.sample_rate = int(sample_rate)
        # WSOLA frames must span a few pitch periods (a 100 Hz voice has 10 ms periods); 40 ms is the usual choice.
        self.frame_length = max(64, int(round(frame_seconds * self.sample_rate)) // 2 * 2)
        self._synthesis_hop = self.frame_length // 2
        self._rate = _check_rate(rate)
        self._tsm = None
        self._owed = 0.0  # output samples the WSOLA part owes, by the rates it was fed at
        self._produced = 0  # output samples the WSOLA part has produced so far
        self._wsola_in = 0  # input samples fed to WSOLA (the rest passed through)
        self.samples_in = 0
        self.samples_out = 0

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def effective_rate(self) -> float:
        """WSOLA steps its analysis hop in whole samples, so the rate actually applied is quantised."""
        return self.quantise(self._rate)

    def quantise(self, rate: float) -> float:
        if rate == 1.0:
            return 1.0
        return int(self._synthesis_hop * rate) / self._synthesis_hop

    @property
    def expected_output(self) -> float:
        """Output samples this stretcher will have produced once flushed, for the input fed so far."""
        passthrough = self.samples_in - self._wsola_in
        return passthrough + self._owed

    def set_rate(self, rate: float) -> None:
        self._rate = _check_rate(rate)
        if self._tsm is not None:
            self._tsm.set_speed(self._rate)

    def process(self, samples: np.ndarray) -> np.ndarray:
        x = _as_mono(samples)
        self.samples_in += x.size
        if self._tsm is None and self._rate == 1.0:
            self.samples_out += x.size
            return x.copy()
        if x.size == 0:
            return np.zeros(0, np.float32)
        if self._tsm is None:
            from audiotsm import wsola

            self._tsm = wsola(1, speed=self._rate, frame_length=self.frame_length)
        self._wsola_in += x.size
        self._owed += x.size / self.effective_rate
        return self._run(x[None, :].astype(np.float64), flush=False)

    def flush(self) -> np.ndarray:
        """End of the clause: the last samples WSOLA holds back, trimmed so the total length is exact."""
        if self._tsm is None:
            return np.zeros(0, np.float32)
        # audiotsm drops the input tail shorter than a frame when flushing: feed silence past the end, then trim.
        before = self._produced
        tail = self._run(np.zeros((1, 2 * self.frame_length)), flush=True)
        self._tsm = None
        needed = max(int(round(self._owed)) - before, 0)
        out = tail[:needed] if tail.size >= needed else np.concatenate([tail, np.zeros(needed - tail.size, np.float32)])
        self._produced = before + out.size
        self.samples_out += out.size - tail.size
        return out

    def _run(self, block: np.ndarray, flush: bool) -> np.ndarray:
        from audiotsm.io.array import ArrayReader, ArrayWriter

        writer = ArrayWriter(1)
        self._tsm.run(ArrayReader(block), writer, flush=flush)
        y = writer.data[0].astype(np.float32)
        self._produced += y.size
        self.samples_out += y.size
        return y


def time_stretch(samples: np.ndarray, sample_rate: int, rate: float, frame_seconds: float = 0.04) -> np.ndarray:
    """Compress a whole signal in one go: ``len(out) == round(len(samples) / effective_rate)``."""
    stretch = StreamingTimeStretch(sample_rate, rate, frame_seconds)
    head = stretch.process(samples)
    return np.concatenate([head, stretch.flush()])
