"""Test media with a real face and real speech, built on the fly (nothing binary is checked in).

Face: scikit-image's ``astronaut()`` photo (Eileen Collins, public domain), cropped around the head and downscaled
so tests stay fast; Debian opencv-doc's ``Megamind.avi`` (a cartoon face) is the fallback where scikit-image is not
installed. Speech: Debian pocketsphinx-testdata's LibriVox clips (16 kHz). A "talking clip" is the photo moved
and zoomed a little over time (so the tracker has something to follow), optionally with faceless frames spliced
in, muxed with speech into an H.264 MP4. Tests are skipped, not failed, where the sources are not installed.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0880.wav")
MEGAMIND = Path("/usr/share/doc/opencv-doc/examples/data/Megamind.avi")
SPEECH_RATE = 16000
# in face_photo(256) mediapipe finds the face at about x 91-174, y 43-126
ASTRONAUT_CROP = (20, 340, 60, 380)  # y1, y2, x1, x2 in the 512 x 512 original: head and shoulders


def face_photo(size: int | tuple[int, int] = 256) -> np.ndarray:
    """A real face photo, RGB uint8, ``size`` square or (width, height)."""
    w, h = (size, size) if isinstance(size, int) else size
    try:
        from skimage import data

        y1, y2, x1, x2 = ASTRONAUT_CROP
        image = data.astronaut()[y1:y2, x1:x2]
    except ImportError:
        if not MEGAMIND.exists():
            pytest.skip("no face photo: pip install scikit-image (or apt install opencv-doc)")
        cap = cv2.VideoCapture(str(MEGAMIND))
        ok, bgr = cap.read()
        cap.release()
        if not ok:
            pytest.skip(f"{MEGAMIND} is unreadable")
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA))


def write_face_photo(path: Path, size: int | tuple[int, int] = 256) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(face_photo(size), cv2.COLOR_RGB2BGR))
    return path


def speech(seconds: float, offset: float = 0.4) -> np.ndarray:
    """``seconds`` of real English speech at 16 kHz (from ``offset`` into the clip, past its leading silence)."""
    if not LIBRIVOX.exists():
        pytest.skip("pocketsphinx-testdata is not installed (apt install pocketsphinx-testdata)")
    from rt_f2f.audio import read_audio

    wav = read_audio(LIBRIVOX, SPEECH_RATE)
    start = int(offset * SPEECH_RATE)
    clip = wav[start : start + int(round(seconds * SPEECH_RATE))]
    if clip.size < int(round(seconds * SPEECH_RATE)):
        clip = np.concatenate([clip, np.zeros(int(round(seconds * SPEECH_RATE)) - clip.size, np.float32)])
    return clip


def write_speech(path: Path, seconds: float, offset: float = 0.4) -> Path:
    from rt_f2f.audio import write_wav

    return write_wav(path, speech(seconds, offset), SPEECH_RATE)


def moving_frames(n: int, size: int = 256, faceless: frozenset[int] = frozenset()) -> list[np.ndarray]:
    """The photo drifting right and bobbing, with a slow zoom; indices in ``faceless`` are a plain wall instead."""
    base = face_photo(size)
    wall = np.full_like(base, 200)
    frames = []
    for i in range(n):
        if i in faceless:
            frames.append(wall.copy())
            continue
        zoom = 1.0 + 0.002 * i
        matrix = cv2.getRotationMatrix2D((size / 2, size / 2), 0.0, zoom)
        matrix[0, 2] += 0.8 * i
        matrix[1, 2] += 3.0 * np.sin(i / 6)
        frames.append(cv2.warpAffine(base, matrix, (size, size), borderMode=cv2.BORDER_REFLECT))
    return frames


def write_talking_clip(
    path: Path, seconds: float, fps: float = 25.0, size: int = 256, faceless: frozenset[int] = frozenset()
) -> Path:
    """An MP4 of the moving photo with speech muxed in (AAC), ``round(seconds * fps)`` frames."""
    from rt_f2f.video import write_video

    n = int(round(seconds * fps))
    write_video(path, moving_frames(n, size, faceless), fps, audio=speech(seconds), audio_rate=SPEECH_RATE)
    return path
