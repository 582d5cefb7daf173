"""Parity with the original Wav2Lip ``inference.py``: what ``rt-f2f lipsync`` feeds the generator, frame by frame.

``original_inputs`` below is a transcription of the original loop (its ``audio.py`` mel with the ``hparams.py``
constants, the mel-chunk loop, ``--resize_factor`` / ``--rotate`` / ``--crop``, ``--box``, ``datagen``'s crop,
resize, mask and scaling), in numpy and cv2 only. The file command runs with a recording backend in place of the
network, so the test compares the exact tensors the generator would get. Both sides read the same decoded frames
(the original decodes with cv2, we with PyAV: the pixels of a lossy video may differ by decoder, which is not what
this test is about) and the same 16 kHz WAV.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from test_lipsync_mel import original_chunks

from rt_f2f.audio import read_audio, write_wav
from rt_f2f.frames import VideoFrame
from rt_f2f.lipsync import filerun
from rt_f2f.lipsync.mel import SAMPLE_RATE, mel_basis
from rt_f2f.lipsync.stream import LipSyncStream
from rt_f2f.video import read_frames, write_video

SPEECH = Path(__file__).resolve().parents[1] / "examples" / "en_sample.wav"


# ---------------------------------------------------------------------------------- the original, transcribed


def original_melspectrogram(wav: np.ndarray) -> np.ndarray:
    """audio.py: preemphasis(0.97) -> |stft| (librosa 0.7: centred, reflect padded, hann 800, hop 200) -> mel
    (80 Slaney bands 55-7600 Hz) -> amp_to_db - 20 -> symmetric normalise to [-4, 4] with clipping."""
    y = np.append(wav[0], wav[1:] - 0.97 * wav[:-1]).astype(np.float64)  # scipy.signal.lfilter([1, -k], [1], wav)
    padded = np.pad(y, 400, mode="reflect")
    n = 1 + (len(padded) - 800) // 200
    frames = np.stack([padded[i * 200 : i * 200 + 800] for i in range(n)])
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(800) / 800)  # scipy.signal.get_window("hann", 800), periodic
    spec = np.abs(np.fft.rfft(frames * hann, axis=1)).T
    try:
        import librosa

        basis = librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600)
    except ImportError:  # the same filters, checked against librosa in test_lipsync_mel.py
        basis = mel_basis()
    db = 20 * np.log10(np.maximum(1e-5, basis @ spec)) - 20
    return np.clip((2 * 4) * ((db + 100) / 100) - 4, -4, 4)


def original_inputs(
    frames_bgr: list[np.ndarray],
    wav: np.ndarray,
    fps: float,
    box: tuple[int, int, int, int],
    resize_factor: int = 1,
    rotate: bool = False,
    crop: tuple[int, int, int, int] = (0, -1, 0, -1),
) -> tuple[np.ndarray, np.ndarray]:
    """inference.py's main() + datagen() for a fixed --box: (mel_batch (N,1,80,16), img_batch (N,6,96,96))."""
    full_frames = []
    for frame in frames_bgr:
        if resize_factor > 1:
            frame = cv2.resize(frame, (frame.shape[1] // resize_factor, frame.shape[0] // resize_factor))
        if rotate:
            frame = cv2.rotate(frame, cv2.ROTATE_90_CLOCKWISE)
        y1, y2, x1, x2 = crop
        if x2 == -1:
            x2 = frame.shape[1]
        if y2 == -1:
            y2 = frame.shape[0]
        full_frames.append(frame[y1:y2, x1:x2])
    mel_chunks = original_chunks(original_melspectrogram(wav), fps)  # the `while 1:` loop of main()
    full_frames = full_frames[: len(mel_chunks)]
    y1, y2, x1, x2 = box
    face_det_results = [[f[y1:y2, x1:x2], (y1, y2, x1, x2)] for f in full_frames]
    img_batch, mel_batch = [], []
    for i, m in enumerate(mel_chunks):
        idx = i % len(full_frames)
        face, _coords = face_det_results[idx]
        img_batch.append(cv2.resize(face, (96, 96)))
        mel_batch.append(m)
    img_batch, mel_batch = np.asarray(img_batch), np.asarray(mel_batch)
    img_masked = img_batch.copy()
    img_masked[:, 96 // 2 :] = 0
    img_batch = np.concatenate((img_masked, img_batch), axis=3) / 255.0
    mel_batch = np.reshape(mel_batch, [len(mel_batch), mel_batch.shape[1], mel_batch.shape[2], 1])
    # the torch.FloatTensor(np.transpose(...)) of the original's inference loop
    return (
        np.transpose(mel_batch, (0, 3, 1, 2)).astype(np.float32),
        np.transpose(img_batch, (0, 3, 1, 2)).astype(np.float32),
    )


# ---------------------------------------------------------------------------------- what rt-f2f feeds


class Recorder:
    """A backend that keeps every input it gets and returns the reference face (so the output is well formed)."""

    name = "recorder"

    def __init__(self) -> None:
        self.mels: list[np.ndarray] = []
        self.faces: list[np.ndarray] = []

    def infer(self, mel: np.ndarray, faces: np.ndarray) -> np.ndarray:
        self.mels.append(np.array(mel, np.float32))
        self.faces.append(np.array(faces, np.float32))
        return np.ascontiguousarray(faces[:, 3:6])

    @property
    def mel(self) -> np.ndarray:
        return np.concatenate(self.mels)

    @property
    def face(self) -> np.ndarray:
        return np.concatenate(self.faces)


def textured_frames(n: int, width: int, height: int) -> list[np.ndarray]:
    """RGB frames with fine detail (so bilinear vs area resizing would show) that change from frame to frame."""
    rng = np.random.default_rng(7)
    base = rng.integers(0, 256, (height // 4, width // 4, 3), dtype=np.uint8)
    base = cv2.resize(base, (width, height), interpolation=cv2.INTER_CUBIC)
    frames = []
    for i in range(n):
        f = np.roll(base, 3 * i, axis=1).copy()
        cv2.putText(f, str(i), (10, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255, 255, 255), 2)
        frames.append(f)
    return frames


@pytest.fixture(scope="module")
def cut_speech(tmp_path_factory) -> Path:
    """1.37 s of real speech, cut in the middle of a word (the cut point is loud, not a pause)."""
    wav = read_audio(SPEECH, SAMPLE_RATE)
    cut = int(1.37 * SAMPLE_RATE)
    tail = wav[cut - 400 : cut]
    assert np.sqrt(np.mean(tail**2)) > 0.1 * np.sqrt(np.mean(wav[:cut] ** 2)) * 3  # speech, not silence, at the cut
    path = tmp_path_factory.mktemp("parity") / "cut.wav"
    return write_wav(path, wav[:cut], SAMPLE_RATE)


CASES = [
    # fps, frames in the video, frame size, box (top, bottom, left, right), exact, resize, rotate, crop
    pytest.param(25.0, 40, (176, 144), (30, 90, 40, 96), False, 1, False, (0, -1, 0, -1), id="25fps-small-box"),
    pytest.param(30.0, 45, (224, 208), (20, 190, 30, 180), False, 1, False, (0, -1, 0, -1), id="30fps-large-box"),
    pytest.param(30.0, 17, (320, 256), (10, 120, 20, 130), True, 2, True, (4, -1, 6, 120), id="30fps-exact-loop-rot"),
    pytest.param(25.0, 12, (352, 288), (40, 200, 10, 150), True, 1, False, (8, 260, 0, -1), id="25fps-exact-loop"),
]


@pytest.mark.parametrize(("fps", "n", "size", "box", "exact", "resize", "rotate", "crop"), CASES)
def test_generator_inputs_equal_the_original_inference_loop(
    tmp_path, cut_speech, fps, n, size, box, exact, resize, rotate, crop
):
    video = tmp_path / "face.mp4"
    write_video(video, textured_frames(n, *size), fps)
    decoded = [f.image for f in read_frames(video)]
    recorder = Recorder()
    result = filerun.lipsync_file(
        None, video, cut_speech, tmp_path / "out.mp4", fps=fps, batch_size=8, backend=recorder,
        box=box, crop=crop, rotate=rotate, resize_factor=resize, exact=exact, progress=False,
    )  # fmt: skip
    wav = read_audio(cut_speech, SAMPLE_RATE)
    want_mel, want_faces = original_inputs([f[..., ::-1] for f in decoded], wav, fps, box, resize, rotate, crop)
    assert result.frames == len(want_mel) == len(recorder.mel)
    # the original's count: one frame per mel chunk, fewer than ceil(duration * fps)
    assert result.frames < np.ceil(wav.size / SAMPLE_RATE * fps)
    np.testing.assert_allclose(recorder.mel, want_mel, atol=2e-5, rtol=0)
    np.testing.assert_allclose(recorder.face, want_faces, atol=1e-6, rtol=0)


def test_a_still_photo_with_a_box_gets_the_same_inputs(tmp_path, cut_speech):
    photo = tmp_path / "face.png"
    rgb = textured_frames(1, 200, 180)[0]
    cv2.imwrite(str(photo), rgb[..., ::-1])
    recorder = Recorder()
    filerun.lipsync_file(
        None, photo, cut_speech, tmp_path / "o.mp4", fps=30.0, backend=recorder, box=(5, 150, 20, 170), progress=False
    )
    want_mel, want_faces = original_inputs([rgb[..., ::-1]], read_audio(cut_speech), 30.0, (5, 150, 20, 170))
    np.testing.assert_allclose(recorder.mel, want_mel, atol=2e-5, rtol=0)
    np.testing.assert_allclose(recorder.face, want_faces, atol=1e-6, rtol=0)


def test_streaming_windows_equal_the_original_wherever_the_audio_is_known(cut_speech):
    """Audio arriving in 20 ms pieces: each frame's window equals the whole-file one (start reflection included)
    as soon as its audio is in; ``end_audio`` then gives the original's padded and clamped end."""
    wav = read_audio(cut_speech, SAMPLE_RATE)
    fps = 25.0
    want_mel, _ = original_inputs([np.zeros((120, 120, 3), np.uint8)], wav, fps, (0, 96, 0, 96))
    recorder = Recorder()
    stream = LipSyncStream(recorder, fps=fps, batch_size=4, max_latency_s=0.5, tracker=object())
    from rt_f2f.lipsync.faces import FaceBox

    box = FaceBox(0, 0, 96, 96)
    image = np.zeros((120, 120, 3), np.uint8)
    piece = SAMPLE_RATE // 50
    frame = 0
    for start in range(0, wav.size, piece):
        stream.push_audio(wav[start : start + piece], start / SAMPLE_RATE)
        while frame < len(want_mel) and frame / fps <= start / SAMPLE_RATE:
            stream.push_video(VideoFrame(image=image, pts=frame / fps, index=frame, source="t"), box)
            frame += 1
    streamed = len(np.concatenate(recorder.mels)) if recorder.mels else 0
    assert streamed > 0  # some frames went out before the audio ended
    np.testing.assert_allclose(np.concatenate(recorder.mels), want_mel[:streamed], atol=2e-5, rtol=0)
    while frame < len(want_mel):
        stream.push_video(VideoFrame(image=image, pts=frame / fps, index=frame, source="t"), box)
        frame += 1
    stream.end_audio()
    stream.flush()
    np.testing.assert_allclose(recorder.mel, want_mel, atol=2e-5, rtol=0)
