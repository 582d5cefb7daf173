"""Audio a test can make and check without any model: tones, the strongest frequency, how much of it is sound."""

from __future__ import annotations

import numpy as np


def tone(freq: float, seconds: float, rate: int = 16000, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_frequency(samples: np.ndarray, rate: int = 48000) -> float:
    """The strongest frequency in ``samples``, in Hz (Hann window: a tone's leakage stays in its neighbours)."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1 / rate)[np.argmax(spectrum)])


def loud_seconds(samples_48k: np.ndarray) -> float:
    """How much of the audio is sound (20 ms frames above -40 dBFS RMS), in seconds."""
    n = samples_48k.size // 960
    if n == 0:
        return 0.0
    rms = np.sqrt(np.mean(samples_48k[: n * 960].reshape(n, 960) ** 2, axis=1))
    return float(np.count_nonzero(rms > 0.01) * 0.02)
