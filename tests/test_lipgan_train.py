"""``rt-f2f train lipgan`` on a synthetic talking-face dataset in the shared layout: samples are drawn as the original
draws them, and the command trains, evaluates and writes files that load as LipGAN weights.

Not here (yet): a test that the discriminator learns to separate in-sync from off-sync pairs. On this dataset it sat
at the trivial solution (every distance 0.5, loss 0.25) for the 60-80 steps a CPU test can afford; see the report.

The dataset: each clip's audio is a tone at one of four pitches per 0.32 s segment, in a random pattern, over a
little noise; each face frame is a drawn face whose mouth opens the wider the higher its moment's pitch, jittered
in place and colour. (Pitch rather than loudness: the discriminator's instance norms take the level out of each
input, as they do in the original.) Only lip sync links a face to its audio. Val clips use unseen patterns.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from rt_f2f.audio import write_wav
from rt_f2f.train.dataset import write_split
from rt_f2f.train.lipgan import batch, lipgan_sample

RATE = 16_000
FPS = 25
SEGMENT_FRAMES = 8  # 0.32 s per pitch: most of a 27-step (0.34 s) mel window
PITCHES = (300.0, 800.0, 1800.0, 4000.0)
REPO = Path(__file__).resolve().parents[1]


LEVELS = len(PITCHES)


def draw_face(level: int, rng: np.random.Generator, size: int = 96) -> np.ndarray:
    img = np.full((size, size, 3), (70, 100, 130), np.uint8)
    dx, dy = (int(v) for v in rng.integers(-2, 3, size=2))
    cx, cy = size // 2 + dx, size // 2 + dy
    skin = tuple(int(c) for c in np.array([150, 180, 220]) + rng.integers(-10, 11, size=3))
    cv2.ellipse(img, (cx, cy), (34, 44), 0, 0, 360, skin, -1)
    for ex in (-14, 14):
        cv2.circle(img, (cx + ex, cy - 14), 4, (40, 40, 40), -1)
    cv2.ellipse(img, (cx, cy + 22), (8 + 6 * level, 1 + 5 * level), 0, 0, 360, (30, 20, 90), -1)  # a big signal
    return np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)


def make_dataset(root: Path, clips: dict[str, int], seconds: float = 3.0, seed: int = 0) -> Path:
    """``clips`` maps a split to its number of clips; writes DATA/<split>/<k>/N.jpg + audio.wav and the lists."""
    rng = np.random.default_rng(seed)
    n_frames = int(seconds * FPS)
    for split, count in clips.items():
        entries = []
        for k in range(count):
            levels = rng.integers(0, LEVELS, size=n_frames // SEGMENT_FRAMES + 1)
            frame_level = np.repeat(levels, SEGMENT_FRAMES)[:n_frames]
            pitch = np.repeat(np.asarray(PITCHES)[frame_level], RATE // FPS)
            phase = 2 * np.pi * np.cumsum(pitch) / RATE
            wav = (0.3 * np.sin(phase) + 0.01 * rng.standard_normal(pitch.size)).astype(np.float32)
            folder = root / split / str(k)
            folder.mkdir(parents=True)
            write_wav(folder / "audio.wav", wav, RATE)
            for i, level in enumerate(frame_level):
                cv2.imwrite(str(folder / f"{i}.jpg"), draw_face(int(level), rng))
            entries.append(f"{split}/{k}")
        write_split(root, split, entries)
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("lipgan-data"), {"train": 6, "val": 3})


def test_samples_follow_the_original_draw(data):
    from rt_f2f.train.dataset import ClipDataset

    ds = ClipDataset(data, "train")
    rng = np.random.default_rng(0)
    for _ in range(20):
        s = lipgan_sample(ds, rng)
        assert s.faces.shape == (6, 96, 96) and s.mel.shape == (1, 80, 27) and s.target.shape == (3, 96, 96)
        assert abs(s.frame - s.reference_frame) >= 6  # choose_ip_frame
        assert np.array_equal(s.faces[3:, :48], s.target[:, :48]) and not s.faces[3:, 48:].any()  # masked truth
        assert s.frame >= 4  # its 27 mel steps start 4 frames earlier, inside the audio
    faces, mel, target = batch(ds, 4, rng)
    assert faces.shape == (4, 6, 96, 96) and mel.dtype == np.float32 and target.max() <= 1.0


def test_train_command_runs_one_step_and_reports(data, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "rt_f2f", "train", "lipgan", "--data", str(data), "--out", str(out), "--steps", "1"]
        + ["--batch_size", "2", "--eval_batches", "1", "--device", "cpu"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "lipgan_gen.h5" in proc.stderr and "distance in sync" in proc.stderr
    assert (out / "lipgan_gen.h5").is_file() and (out / "lipgan_disc.h5").is_file()
    bad = subprocess.run(
        [sys.executable, "-m", "rt_f2f", "train", "lipgan", "--data", str(tmp_path / "none"), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert bad.returncode == 2 and "train.txt" in bad.stderr and "Traceback" not in bad.stderr
