"""Pitch-preserving time compression: durations shrink by the rate, the voice's pitch does not move."""

from __future__ import annotations

import numpy as np
import pytest

from rt_f2f.audio import resample
from rt_f2f.av.timestretch import StreamingTimeStretch, time_stretch
from rt_f2f.errors import MediaError, RtF2fError

SR = 16000


def tone(freq: float, seconds: float, sr: int = SR, harmonics: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = sum(np.sin(2 * np.pi * freq * h * t) / h for h in range(1, harmonics + 1))
    return (0.4 * x / np.max(np.abs(x))).astype(np.float32)


def dominant(x: np.ndarray, sr: int = SR) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spectrum) * sr / x.size)


@pytest.mark.parametrize("rate", [1.0, 1.1, 1.2, 1.25, 1.5])
def test_duration_shrinks_by_the_rate(rate: float) -> None:
    x = tone(220, 3.0)
    y = time_stretch(x, SR, rate)
    applied = StreamingTimeStretch(SR, rate).effective_rate
    assert abs(applied - rate) / rate < 0.005
    assert y.size == round(x.size / applied)


@pytest.mark.parametrize("rate", [1.1, 1.25, 1.5])
@pytest.mark.parametrize("freq,harmonics", [(220.0, 1), (130.0, 6)])
def test_pitch_is_preserved(rate: float, freq: float, harmonics: int) -> None:
    x = tone(freq, 2.0, harmonics=harmonics)
    y = time_stretch(x, SR, rate)
    assert abs(dominant(y) - freq) / freq < 0.03
    # Plain resampling to the same length moves the pitch by the rate: the check above can tell the two apart.
    naive = resample(x, int(SR * rate), SR)
    assert abs(dominant(naive) - freq * rate) / (freq * rate) < 0.03


def test_compressed_speech_has_no_dropouts() -> None:
    y = time_stretch(tone(180, 2.0, harmonics=4), SR, 1.25)
    win = int(0.01 * SR)
    rms = np.sqrt(np.mean(y[: y.size // win * win].reshape(-1, win) ** 2, axis=1))
    inner = rms[3:-3]  # the very first and last windows carry the WSOLA edge ramps
    assert inner.min() > 0.6 * np.median(inner)


def test_streaming_with_a_rate_change_matches_the_planned_length() -> None:
    x = tone(200, 3.0, harmonics=3)
    stretch = StreamingTimeStretch(SR)
    out = [stretch.process(x[:8000])]  # rate 1.0: passes through untouched
    assert np.array_equal(out[0], x[:8000])
    stretch.set_rate(1.25)
    out.append(stretch.process(x[8000:24000]))
    stretch.set_rate(1.1)
    out.append(stretch.process(x[24000:]))
    out.append(stretch.flush())
    y = np.concatenate(out)
    expected = 8000 + 16000 / stretch.quantise(1.25) + (x.size - 24000) / stretch.quantise(1.1)
    assert y.size == round(expected)
    assert stretch.samples_out == y.size
    assert abs(dominant(y[8000:]) - 200) / 200 < 0.03


def test_rate_one_is_exact_passthrough() -> None:
    x = np.random.default_rng(0).standard_normal(5000).astype(np.float32) * 0.1
    assert np.array_equal(time_stretch(x, SR, 1.0), x)


def test_bad_input_is_refused() -> None:
    with pytest.raises(RtF2fError, match="rate"):
        StreamingTimeStretch(SR, 3.0)
    with pytest.raises(RtF2fError, match="rate"):
        StreamingTimeStretch(SR).set_rate(0.5)
    with pytest.raises(MediaError, match="mono"):
        StreamingTimeStretch(SR, 1.2).process(np.zeros((2, 100), np.float32))
    with pytest.raises(RtF2fError, match="sample rate"):
        StreamingTimeStretch(0)
