"""``rt-f2f train lipgan`` on a synthetic talking-face dataset in the shared layout: the discriminator learns to
tell in-sync from off-sync face/audio pairs on held-out clips, and the files it writes load as LipGAN weights.

The dataset: each clip's audio is noise bursts and silence in 0.2 s segments (a random on/off pattern); each face
frame is a drawn face whose mouth is open while its moment is loud, jittered in place and colour. Only lip sync
links a face to its audio. Val clips use patterns the training never saw.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from rt_f2f.audio import write_wav
from rt_f2f.lipsync.lipgan_h5 import identify
from rt_f2f.train.dataset import write_split
from rt_f2f.train.lipgan import LipGANConfig, batch, lipgan_sample, train_lipgan

RATE = 16_000
FPS = 25
SEGMENT_FRAMES = 5  # 0.2 s on or off
REPO = Path(__file__).resolve().parents[1]


def draw_face(mouth_open: bool, rng: np.random.Generator, size: int = 96) -> np.ndarray:
    img = np.full((size, size, 3), (70, 100, 130), np.uint8)
    dx, dy = (int(v) for v in rng.integers(-2, 3, size=2))
    cx, cy = size // 2 + dx, size // 2 + dy
    skin = tuple(int(c) for c in np.array([150, 180, 220]) + rng.integers(-10, 11, size=3))
    cv2.ellipse(img, (cx, cy), (34, 44), 0, 0, 360, skin, -1)
    for ex in (-14, 14):
        cv2.circle(img, (cx + ex, cy - 14), 4, (40, 40, 40), -1)
    cv2.ellipse(img, (cx, cy + 24), (13, 11 if mouth_open else 1), 0, 0, 360, (30, 20, 90), -1)
    return np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)


def make_dataset(root: Path, clips: dict[str, int], seconds: float = 3.0, seed: int = 0) -> Path:
    """``clips`` maps a split to its number of clips; writes DATA/<split>/<k>/N.jpg + audio.wav and the lists."""
    rng = np.random.default_rng(seed)
    n_frames = int(seconds * FPS)
    for split, count in clips.items():
        entries = []
        for k in range(count):
            on = rng.integers(0, 2, size=n_frames // SEGMENT_FRAMES + 1).astype(bool)
            frame_on = np.repeat(on, SEGMENT_FRAMES)[:n_frames]
            samples = np.repeat(frame_on, RATE // FPS).astype(np.float32)
            wav = samples * 0.4 * rng.standard_normal(samples.size).astype(np.float32)
            folder = root / split / str(k)
            folder.mkdir(parents=True)
            write_wav(folder / "audio.wav", wav, RATE)
            for i, is_on in enumerate(frame_on):
                cv2.imwrite(str(folder / f"{i}.jpg"), draw_face(bool(is_on), rng))
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


@pytest.mark.slow
def test_discriminator_learns_sync_on_held_out_clips_and_writes_loadable_weights(data, tmp_path):
    cfg = LipGANConfig(
        data=data, out=tmp_path / "out", steps=60, batch_size=8, lr=2e-4, eval_every=60, eval_batches=4,
        checkpoint_every=1000, device="cpu", seed=0,
    )  # fmt: skip
    result = train_lipgan(cfg)
    before, after = result.val[0], result.val[-1]
    # held-out clips: real faces are nearer their own audio than other samples' audio, and the loss fell
    assert after["d_off_sync"] - after["d_in_sync"] > 0.15, after
    assert after["contrastive"] < 0.8 * before["contrastive"], (before, after)
    assert after["l1"] < before["l1"]  # the generator learns to reconstruct too
    assert identify(result.generator) == "lipgan" and identify(result.discriminator) == "lipgan_disc"
    log = json.loads(result.log.read_text())
    assert len(log["train"]) == 60 and log["val"][-1]["step"] == 60


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
