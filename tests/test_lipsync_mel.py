"""Wav2Lip's audio features: equal to the original recipe (checked with librosa) and windowed per video frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from rt_f2f.errors import MediaError
from rt_f2f.lipsync.mel import (
    MEL_WINDOW,
    frame_count,
    mel_basis,
    mel_chunks,
    melspectrogram,
    window_start,
)

SPEECH = Path("/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0880.wav")


def reference_melspectrogram(wav: np.ndarray) -> np.ndarray:
    """The original audio.py with its hparams, written against librosa's own STFT and mel filters.

    librosa >= 0.10 takes keyword arguments and pads centred frames with zeros by default; the original ran on
    librosa 0.7, whose default was reflect padding, so that is passed explicitly.
    """
    librosa = pytest.importorskip("librosa")
    y = signal.lfilter([1, -0.97], [1], wav.astype(np.float64))
    spec = np.abs(librosa.stft(y=y, n_fft=800, hop_length=200, win_length=800, pad_mode="reflect"))
    basis = librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600, htk=False, norm="slaney")
    min_level = np.exp(-100 / 20 * np.log(10))
    db = 20 * np.log10(np.maximum(min_level, basis @ spec)) - 20
    return np.clip((2 * 4) * ((db + 100) / 100) - 4, -4, 4)


def original_chunks(mel: np.ndarray, fps: float) -> list[np.ndarray]:
    """The original inference.py's loop, verbatim in behaviour."""
    chunks, i, mult = [], 0, 80.0 / fps
    while True:
        start = int(i * mult)
        if start + 16 > len(mel[0]):
            chunks.append(mel[:, len(mel[0]) - 16 :])
            break
        chunks.append(mel[:, start : start + 16])
        i += 1
    return chunks


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    if not SPEECH.is_file():
        pytest.skip("pocketsphinx-testdata speech clip is not installed")
    from rt_f2f.audio import read_audio

    return read_audio(SPEECH, 16000)


def test_mel_basis_equals_librosa_slaney():
    librosa = pytest.importorskip("librosa")
    expected = librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600, dtype=np.float64)
    np.testing.assert_allclose(mel_basis(), expected, rtol=1e-9, atol=1e-12)


def test_speech_matches_reference(speech):
    ours = melspectrogram(speech)
    ref = reference_melspectrogram(speech)
    assert ours.shape == ref.shape == (80, 1 + len(speech) // 200)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=1e-5)  # range is [-4, 4]; float32 output rounding is ~5e-7
    assert ours.min() >= -4 and ours.max() <= 4 and ours.std() > 0.5  # real speech spans the scale


@pytest.mark.filterwarnings("ignore:n_fft=800 is too large")
@pytest.mark.parametrize("n", [1, 150, 401, 799, 800, 3201])
def test_odd_lengths_match_reference(n):
    wav = np.random.default_rng(n).normal(0, 0.1, n).astype(np.float32)
    ours = melspectrogram(wav)
    assert ours.shape == (80, 1 + n // 200)
    np.testing.assert_allclose(ours, reference_melspectrogram(wav), atol=1e-5)


def test_tone_lands_in_its_mel_band_and_silence_is_floor():
    t = np.arange(16000) / 16000
    tone = 0.5 * np.sin(2 * np.pi * 1000 * t)
    mel = melspectrogram(tone)
    centres = (mel_basis() * np.linspace(0, 8000, 401)).sum(1) / mel_basis().sum(1)
    peak = int(np.argmax(mel[:, 40]))
    assert abs(centres[peak] - 1000) < 60
    assert np.all(melspectrogram(np.zeros(4000)) == -4)


def test_bad_audio_is_refused():
    with pytest.raises(MediaError, match="mono"):
        melspectrogram(np.zeros((2, 100)))
    with pytest.raises(MediaError, match="empty"):
        melspectrogram(np.zeros(0))
    with pytest.raises(MediaError, match="NaN"):
        melspectrogram(np.array([0.0, np.nan, 0.0]))


@pytest.mark.parametrize("fps", [25.0, 29.97, 30.0, 24.0, 60.0])
def test_chunks_follow_the_original_loop(speech, fps):
    mel = melspectrogram(speech)
    expected = original_chunks(mel, fps)
    n = frame_count(mel.shape[1], fps)
    assert n == len(expected)
    chunks = mel_chunks(mel, fps, n)
    assert chunks.shape == (n, 80, 16) and chunks.dtype == np.float32
    for i, ref in enumerate(expected):
        np.testing.assert_array_equal(chunks[i], ref)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.integers(min_value=16, max_value=400),
    fps=st.sampled_from([12.5, 23.976, 24.0, 25.0, 29.97, 30.0, 50.0, 59.94]),
)
def test_frame_count_and_windows_agree_with_original(steps, fps):
    mel = np.arange(80 * steps, dtype=np.float32).reshape(80, steps)
    expected = original_chunks(mel, fps)
    assert frame_count(steps, fps) == len(expected)
    np.testing.assert_array_equal(mel_chunks(mel, fps, len(expected)), np.stack(expected))


def test_frames_past_the_audio_reuse_the_last_window():
    mel = np.random.default_rng(0).normal(size=(80, 40)).astype(np.float32)
    chunks = mel_chunks(mel, 25.0, 20)
    assert window_start(3, 25.0) == 9  # int(3 * 3.2)
    np.testing.assert_array_equal(chunks[3], mel[:, 9:25])
    for i in range(20):
        start = min(window_start(i, 25.0), 40 - MEL_WINDOW)
        np.testing.assert_array_equal(chunks[i], mel[:, start : start + 16])
    np.testing.assert_array_equal(chunks[-1], mel[:, -16:])


def test_short_mel_is_padded_with_silence_and_zero_frames_is_empty():
    mel = np.ones((80, 5), np.float32)
    chunks = mel_chunks(mel, 25.0, 3)
    assert chunks.shape == (3, 80, 16)
    assert np.all(chunks[:, :, :5] == 1) and np.all(chunks[:, :, 5:] == -4)
    assert mel_chunks(mel, 25.0, 0).shape == (0, 80, 16)


def test_bad_chunk_arguments():
    with pytest.raises(MediaError, match=r"\(80, T\)"):
        mel_chunks(np.zeros((40, 100), np.float32), 25, 1)
    with pytest.raises(MediaError, match="positive"):
        mel_chunks(np.zeros((80, 100), np.float32), 0, 1)
    with pytest.raises(MediaError, match="positive"):
        frame_count(100, -1)
