"""A synthetic talking-face dataset in the original preprocess layout: drawn faces whose mouths follow real speech.

The audio is real speech (``examples/en_sample.wav``, 11.6 s at 16 kHz); each video frame's mouth opening is the
speech's loudness during that frame, so the only thing linking a face window to its mel window is lip sync, which
is what SyncNet must learn. Faces jitter a little in place and colour so nothing else is
constant enough to memorise. Train clips come from the first 8 s, val clips from the rest (held-out speech).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from rt_f2f.audio import read_audio, write_wav
from rt_f2f.train.dataset import write_split

SPEECH = Path(__file__).resolve().parents[1] / "examples" / "en_sample.wav"
RATE = 16_000
FPS = 25


def mouth_openings(wav: np.ndarray, n_frames: int, fps: float = FPS) -> np.ndarray:
    """Per frame, the speech's loudness during that frame (compressed, so quiet syllables still move the mouth),
    scaled so that loud speech opens the mouth fully."""
    hop = int(RATE / fps)
    rms = np.array([np.sqrt(np.mean(wav[i * hop : (i + 1) * hop] ** 2)) if i * hop < wav.size else 0.0
                    for i in range(n_frames)])  # fmt: skip
    level = np.sqrt(rms / (np.percentile(rms, 95) or 1.0))
    return np.clip((level - 0.15) / 0.85, 0.0, 1.0)


def draw_face(opening: float, rng: np.random.Generator, size: int = 96) -> np.ndarray:
    """A BGR face: skin oval, eyes, nose, and a dark mouth whose height is ``opening`` (0 closed .. 1 wide)."""
    img = np.full((size, size, 3), (60, 90, 120), np.uint8)
    dx, dy = (int(v) for v in rng.integers(-2, 3, size=2))
    skin = tuple(int(c) for c in np.array([150, 180, 220]) + rng.integers(-10, 11, size=3))
    cx, cy = size // 2 + dx, size // 2 + dy
    cv2.ellipse(img, (cx, cy), (34, 44), 0, 0, 360, skin, -1)
    for ex in (-14, 14):
        cv2.circle(img, (cx + ex, cy - 14), 4, (40, 40, 40), -1)
    cv2.line(img, (cx, cy - 8), (cx, cy + 6), (110, 140, 180), 2)
    height = 1 + int(round(opening * 15))
    cv2.ellipse(img, (cx, cy + 22), (16, height), 0, 0, 360, (20, 10, 40), -1)
    noise = rng.normal(0, 2, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def make_dataset(
    root: Path, train_clips: int = 4, train_seconds: float = 2.0, val_clips: int = 2, seed: int = 0
) -> Path:
    """Write DATA/<group>/<clip>/{N.jpg, audio.wav} and train.txt / val.txt; returns ``root``."""
    wav = read_audio(SPEECH, RATE)
    rng = np.random.default_rng(seed)
    val_start = 8.0
    val_seconds = (wav.size / RATE - val_start) / val_clips
    spans = [("train", k * train_seconds, train_seconds) for k in range(train_clips)]
    spans += [("val", val_start + k * val_seconds, val_seconds) for k in range(val_clips)]
    entries: dict[str, list[str]] = {"train": [], "val": []}
    for k, (split, start, seconds) in enumerate(spans):
        name = f"speaker/{split}{k:02d}"
        clip = root / name
        clip.mkdir(parents=True, exist_ok=True)
        audio = wav[int(start * RATE) : int((start + seconds) * RATE)]
        write_wav(clip / "audio.wav", audio, RATE)
        n = int(seconds * FPS)
        for i, opening in enumerate(mouth_openings(audio, n)):
            cv2.imwrite(str(clip / f"{i}.jpg"), draw_face(opening, rng))
        entries[split].append(name)
    for split, names in entries.items():
        write_split(root, split, names)
    return root
