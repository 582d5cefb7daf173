"""The mel spectrogram Wav2Lip was trained on, and its per-video-frame windows.

The released weights only work with the exact features of the original ``audio.py`` / ``hparams.py``, so every
constant below is theirs: pre-emphasis 0.97, a centred 800-point STFT (Hann, hop 200, reflect padding as
librosa 0.7 did), an 80-band Slaney mel basis over 55-7600 Hz, dB with a -100 dB floor minus a 20 dB reference, then
a symmetric scale to [-4, 4]. Written with numpy/scipy so the runtime does not need librosa; the tests check it
against librosa itself.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import signal

from ..errors import MediaError

SAMPLE_RATE = 16_000
N_FFT = 800
HOP = 200
WIN = 800
N_MELS = 80
FMIN = 55.0
FMAX = 7600.0
PREEMPHASIS = 0.97
REF_LEVEL_DB = 20.0
MIN_LEVEL_DB = -100.0
MAX_ABS_VALUE = 4.0
MEL_STEPS_PER_SECOND = SAMPLE_RATE / HOP  # 80
MEL_WINDOW = 16  # mel steps per video frame: 0.2 s of audio
SILENCE_LEVEL = -MAX_ABS_VALUE  # what a silent (floored) mel bin normalises to


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's auditory mel scale: linear below 1 kHz, logarithmic above (librosa's htk=False)."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(hz >= min_log_hz, min_log_mel + np.log(np.maximum(hz, 1e-10) / min_log_hz) / logstep, hz / f_sp)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)


@lru_cache(maxsize=1)
def mel_basis() -> np.ndarray:
    """(80, 401) triangular filters, area-normalised ("slaney"), as ``librosa.filters.mel`` builds them."""
    fft_freqs = np.linspace(0.0, SAMPLE_RATE / 2, 1 + N_FFT // 2)
    mel_points = _mel_to_hz(np.linspace(_hz_to_mel(FMIN), _hz_to_mel(FMAX), N_MELS + 2))
    widths = np.diff(mel_points)
    ramps = mel_points[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_points[2:] - mel_points[:-2]))[:, None]
    weights.setflags(write=False)
    return weights


@lru_cache(maxsize=1)
def _window() -> np.ndarray:
    return signal.get_window("hann", WIN, fftbins=True)


def stft_magnitude(y: np.ndarray) -> np.ndarray:
    """|STFT| (401, 1 + len(y) // 200) with centred, reflect-padded frames (librosa 0.7's defaults)."""
    # numpy's reflect padding (what librosa 0.7 called) also covers inputs shorter than the pad, by repeated reflection
    padded = np.pad(y, N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    return np.abs(np.fft.rfft(frames * _window(), axis=1)).T


def _check_wav(wav16k: np.ndarray) -> np.ndarray:
    wav = np.asarray(wav16k)
    if wav.ndim != 1:
        raise MediaError(
            f"lip-sync audio must be mono samples (1-D), got shape {wav.shape}", "mix down to one channel first"
        )
    if wav.size == 0:
        raise MediaError("lip-sync audio is empty", "pass at least one sample of 16 kHz audio")
    wav = wav.astype(np.float64)
    if not np.all(np.isfinite(wav)):
        raise MediaError("lip-sync audio contains NaN or infinite samples", "check the audio decoder or TTS output")
    return wav


def _normalised_mel(magnitude: np.ndarray) -> np.ndarray:
    """(401, T) STFT magnitude -> the normalised (80, T) log-mel in [-4, 4] (the original's _normalize(_amp_to_db))."""
    mel = mel_basis() @ magnitude
    min_level = np.exp(MIN_LEVEL_DB / 20 * np.log(10))
    db = 20 * np.log10(np.maximum(min_level, mel)) - REF_LEVEL_DB
    scaled = (2 * MAX_ABS_VALUE) * ((db - MIN_LEVEL_DB) / (-MIN_LEVEL_DB)) - MAX_ABS_VALUE
    return np.clip(scaled, -MAX_ABS_VALUE, MAX_ABS_VALUE).astype(np.float32)


def melspectrogram(wav16k: np.ndarray) -> np.ndarray:
    """Normalised log-mel spectrogram (80, T) of 16 kHz mono audio, T = 1 + len(wav) // 200 (80 steps a second).

    Values lie in [-4, 4]; -4 is silence. Identical (to float rounding) to the original ``audio.melspectrogram``.
    """
    wav = _check_wav(wav16k)
    emphasised = signal.lfilter([1.0, -PREEMPHASIS], [1.0], wav)
    return _normalised_mel(stft_magnitude(emphasised))


def mel_steps(n_samples: int) -> int:
    """How many mel steps the whole-file ``melspectrogram`` of ``n_samples`` samples has."""
    return 1 + n_samples // HOP


def _reflect(index: np.ndarray, n: int) -> np.ndarray:
    """Where numpy's ``reflect`` padding of an ``n``-sample signal takes sample ``index`` from (repeatedly)."""
    if n == 1:
        return np.zeros_like(index)
    period = 2 * (n - 1)
    folded = np.mod(index, period)
    return np.where(folded >= n, period - folded, folded)


def mel_columns(samples: np.ndarray, offset: int, first: int, count: int, total: int | None = None) -> np.ndarray:
    """Steps ``first .. first + count - 1`` of the whole signal's ``melspectrogram``, from part of the signal.

    ``samples`` holds the signal's samples ``offset .. offset + len(samples) - 1``. The left edge is the signal's
    start, so steps near it are reflect-padded exactly as the whole-file STFT pads them (that needs the first
    401 samples to be among ``samples``). ``total`` is the signal's length when its end is known (the same
    reflection happens at the end); None while it is still streaming: samples not held are taken as silence.
    Samples the window needs but ``samples`` does not hold count as zeros. Steps past the end of a known
    signal are silence (-4), as ``mel_chunks`` pads a mel shorter than one window.
    """
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    if count <= 0:
        return np.zeros((N_MELS, 0), np.float32)
    steps = first + np.arange(count)
    index = steps[:, None] * HOP - N_FFT // 2 + np.arange(N_FFT)[None, :]
    index = _reflect(index, total) if total is not None else np.abs(index)

    def held(i: np.ndarray) -> np.ndarray:
        local = i - offset
        ok = (local >= 0) & (local < x.size) & (i >= 0)
        return np.where(ok, x[np.clip(local, 0, max(0, x.size - 1))] if x.size else 0.0, 0.0)

    # pre-emphasis of sample i needs sample i - 1 (none before the signal's first sample)
    frames = held(index) - PREEMPHASIS * held(index - 1)
    out = _normalised_mel(np.abs(np.fft.rfft(frames * _window(), axis=1)).T)
    if total is not None:
        out[:, steps >= mel_steps(total)] = SILENCE_LEVEL
    return out


def window_start(frame_index: int, fps: float) -> int:
    """First mel step of video frame ``frame_index``'s window.

    Computed as the original does (``int(i * (80. / fps))``): at integer boundaries float rounding decides which
    step is taken, and matching it keeps frames aligned with the released model's behaviour.
    """
    return int(frame_index * (MEL_STEPS_PER_SECOND / fps))


def frame_count(n_mel_steps: int, fps: float) -> int:
    """How many video frames the original inference loop makes from ``n_mel_steps`` mel steps.

    It stops at the first window that would run past the end (that one is clamped to the last 16 steps and kept).
    """
    if fps <= 0:
        raise MediaError(f"frame rate must be positive, got {fps}", "pass the video's frames per second")
    i = 0
    while window_start(i, fps) + MEL_WINDOW <= n_mel_steps:
        i += 1
    return i + 1


def mel_chunks(mel: np.ndarray, fps: float, n_frames: int, window: int = MEL_WINDOW) -> np.ndarray:
    """(n_frames, 80, window) windows, one per video frame, starting at ``window_start(i, fps)``.

    ``window`` is 16 steps for Wav2Lip, 27 for LipGAN. A window that would run past the end takes the last steps instead (the original's end handling), so audio
    that is a little shorter than the video freezes the mouth on the final sound rather than failing. A mel
    shorter than the window is first padded on the right with silence.
    """
    if mel.ndim != 2 or mel.shape[0] != N_MELS:
        raise MediaError(f"expected a mel spectrogram of shape (80, T), got {mel.shape}", "use melspectrogram()")
    if fps <= 0:
        raise MediaError(f"frame rate must be positive, got {fps}", "pass the video's frames per second")
    if n_frames < 0:
        raise MediaError(f"frame count must be >= 0, got {n_frames}")
    if mel.shape[1] < window:
        pad = np.full((N_MELS, window - mel.shape[1]), SILENCE_LEVEL, dtype=mel.dtype)
        mel = np.concatenate([mel, pad], axis=1)
    last = mel.shape[1] - window
    starts = np.minimum([window_start(i, fps) for i in range(n_frames)], last).astype(np.intp)
    index = starts[:, None] + np.arange(window)[None, :]
    return np.ascontiguousarray(mel[:, index].transpose(1, 0, 2)).astype(np.float32, copy=False)
