"""``rt-f2f train lipgan`` on the synthetic talking-face dataset the Wav2Lip trainers learn from
(``talking_fixtures``: drawn faces whose mouths open with real speech's loudness, held-out speech in val): samples
are drawn as the original draws them, the command trains, evaluates and writes files that load as LipGAN weights,
and the sync discriminator learns.

The learning test trains the discriminator alone (``train_generator=False``, the command's ``--disc_only``) with
the original's contrastive loss and learning rate (1e-4), 200 steps of 8, for three seeds, then checks on held-out
speech, from the written ``.h5``, that faces lie farther from other samples' audio than from their own: mean
distance gap above 0.15 and separation (the chance that an off-sync pair lies farther than an in-sync one) above
0.65, where an untrained discriminator gives 0 and 0.5. Trial runs: at 3e-4 and 1e-3 (batch 16) the discriminator
stayed at the trivial solution (every distance 0.5, loss 0.5) for the 100-150 steps tried; at 1e-4 it leaves it
after 75-150 steps depending on the seed, and the three seeds here ended at held-out distances 0.31-0.37 in sync
against 0.64-0.75 off sync, separation 0.73-0.80 (160 pairs each). Separation stays well below 1 because two
moments of speech often have the same loudness, hence the same mouth. It shows the code learns; nothing here says
anything about a model trained on real footage. Each seed took 65-75 s (one thread, load average 0.6-3).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from talking_fixtures import make_dataset

from rt_f2f.lipsync.lipgan_h5 import load_lipgan_network
from rt_f2f.train.dataset import ClipDataset
from rt_f2f.train.lipgan import LipGANConfig, batch, lipgan_sample, separation, sync_distances, train_lipgan

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("lipgan") / "DATA")


def test_samples_follow_the_original_draw(data):
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


def test_separation_is_the_chance_that_an_off_sync_pair_lies_farther():
    assert separation(np.array([0.1, 0.2]), np.array([0.3, 0.4])) == 1.0
    assert separation(np.array([0.3, 0.4]), np.array([0.1, 0.2])) == 0.0
    assert separation(np.array([0.1, 0.5]), np.array([0.3, 0.5])) == pytest.approx((1 + 1 + 0 + 0.5) / 4)


def test_shared_embeddings_give_the_discriminators_own_distances():
    from rt_f2f.lipsync.lipgan import LipGANDiscriminator, random_weights_

    disc = random_weights_(LipGANDiscriminator())
    gen = torch.Generator().manual_seed(0)
    faces, mel = torch.rand(12, 3, 96, 96, generator=gen), torch.randn(12, 1, 80, 27, generator=gen)
    with torch.no_grad():
        d_in, d_off = sync_distances(disc, faces, mel)
        torch.testing.assert_close(d_in, disc(faces, mel))
        torch.testing.assert_close(d_off, disc(faces, torch.roll(mel, 10, dims=0)))  # train.py's roll by 10
        _, d_off_small = sync_distances(disc, faces[:4], mel[:4])
        torch.testing.assert_close(d_off_small, disc(faces[:4], torch.roll(mel[:4], 2, dims=0)))


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
    assert "lipgan_gen.h5" in proc.stderr and "distance in sync" in proc.stderr and "separation" in proc.stderr
    assert (out / "lipgan_gen.h5").is_file() and (out / "lipgan_disc.h5").is_file()
    bad = subprocess.run(
        [sys.executable, "-m", "rt_f2f", "train", "lipgan", "--data", str(tmp_path / "none"), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert bad.returncode == 2 and "train.txt" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_discriminator_learns_sync_on_held_out_speech(data, tmp_path, seed):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # spinning OpenMP threads on a shared 2-core machine cost more than they give
    try:
        cfg = LipGANConfig(
            data=data, out=tmp_path / "run", steps=200, batch_size=8, lr=1e-4, eval_every=10**9, eval_batches=1,
            checkpoint_every=10**9, device="cpu", seed=seed, train_generator=False,
        )  # fmt: skip
        result = train_lipgan(cfg)
        # the written discriminator, on held-out speech drawn afresh (not the trainer's own evaluation draws)
        disc = load_lipgan_network(result.discriminator, "lipgan_disc")
        val, rng = ClipDataset(data, "val"), np.random.default_rng(100 + seed)
        d_in, d_off = [], []
        with torch.no_grad():
            for _ in range(10):
                _, mel, target = batch(val, 16, rng)
                a, b = sync_distances(disc, torch.from_numpy(target), torch.from_numpy(mel))
                d_in.append(a.numpy())
                d_off.append(b.numpy())
    finally:
        torch.set_num_threads(threads)
    d_in, d_off = np.concatenate(d_in), np.concatenate(d_off)
    print(
        f"seed {seed}: held-out distance in sync {d_in.mean():.3f}, off sync {d_off.mean():.3f}, "
        f"separation {separation(d_in, d_off):.3f}; trainer's val {result.val[-1]}"
    )
    first = result.val[0]  # before training: every pair about equally far (random embeddings)
    assert abs(first["d_off_sync"] - first["d_in_sync"]) < 0.05, first
    assert d_off.mean() - d_in.mean() > 0.15, (d_in.mean(), d_off.mean())
    assert separation(d_in, d_off) > 0.65, separation(d_in, d_off)
