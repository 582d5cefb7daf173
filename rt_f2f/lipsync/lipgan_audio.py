"""LipGAN's audio features, as the ``fully_pythonic`` branch of Rudrabha/LipGAN computes them.

That branch replaced the paper's MATLAB MFCCs (12 x 35) with a log-mel spectrogram from its ``audio.py``, whose
hyper-parameters (``audio_hparams.py``: 16 kHz, n_fft 800, hop 200, window 800, 80 Slaney mel bands over
55-7600 Hz, pre-emphasis 0.97, -100 dB floor, 20 dB reference, symmetric scaling to [-4, 4]) are exactly those of
Wav2Lip's, so :func:`rt_f2f.lipsync.mel.melspectrogram` computes it. What differs is the window:

- inference (``batch_inference.py``): video frame ``i`` gets the 27 mel steps starting at ``int(i * 80 / fps)``,
  and the loop stops at the first window that would run past the end;
- training (``train.py``): the window of face ``i`` starts four frames earlier, at ``int(80 / 25 * (i - 4))``
  (25 fps, as LRS2), so the face sits in the middle of its 0.34 s of audio; windows that would start before the
  audio or run past it are skipped.
"""

from __future__ import annotations

import numpy as np

from .mel import MEL_STEPS_PER_SECOND, melspectrogram, window_start

MEL_STEPS = 27  # mel_step_size in the fully_pythonic branch: 0.3375 s of audio per frame
TRAIN_FPS = 25.0  # the training code hard-codes LRS2's frame rate
HALF_WINDOW_FRAMES = 4  # train.py's half_window_size

__all__ = ["MEL_STEPS", "inference_chunks", "melspectrogram", "training_window"]


def inference_chunks(mel: np.ndarray, fps: float) -> list[np.ndarray]:
    """The windows ``batch_inference.py`` makes: (80, 27) each, for as many frames as fit wholly in the audio."""
    chunks = []
    i = 0
    while window_start(i, fps) + MEL_STEPS <= mel.shape[1]:
        start = window_start(i, fps)
        chunks.append(mel[:, start : start + MEL_STEPS])
        i += 1
    return chunks


def training_window(mel: np.ndarray, frame_index: int) -> np.ndarray | None:
    """The (80, 27) window ``train.py`` pairs with face ``frame_index`` (25 fps), or None where it does not fit."""
    start = int((MEL_STEPS_PER_SECOND / TRAIN_FPS) * (frame_index - HALF_WINDOW_FRAMES))
    if start < 0 or start + MEL_STEPS > mel.shape[1]:
        return None
    return mel[:, start : start + MEL_STEPS]
