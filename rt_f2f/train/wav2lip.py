"""Training the generator (``rt-f2f train wav2lip``), as ``wav2lip_train.py`` and ``hq_wav2lip_train.py`` do.

Each sample is 5 consecutive frames: the generator sees each frame with its lower half masked plus a reference frame
from elsewhere in the clip, and that frame's mel window; its 5 outputs are scored by

- L1 against the real frames (reconstruction);
- the frozen expert's sync loss: BCE of SyncNet's in-sync probability for the 5 generated lower halves against the
  window's 0.2 s of mel, with target "in sync";
- with ``--gan``, the visual-quality discriminator's adversarial loss (BCE of "real" on the generated faces), while
  the discriminator itself trains on real vs generated faces.

``loss = sync_w * sync + disc_w * adversarial + (1 - sync_w - disc_w) * l1`` with the original's weights
(sync 0.03, disc 0.07). As in the original, the sync term joins only once the val sync loss has fallen below
``sync_gate`` (0.75): a generator from scratch first learns to reconstruct; fine-tuning a released checkpoint passes
the gate at the first evaluation, which runs before the first step. Adam at 1e-4 (betas 0.5, 0.999 with the GAN).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import RtF2fError
from .dataset import FRAMES_PER_WINDOW, ClipDataset
from .log import TrainLog
from .loop import RunConfig, resolve_device, run_steps
from .state import FILE_NAMES, Progress, restore, save_training_checkpoint
from .syncnet import cosine_bce

log = logging.getLogger(__name__)

SYNC_WEIGHT = 0.03  # hq_wav2lip_train.py's syncnet_wt once the gate is passed
DISC_WEIGHT = 0.07  # hparams.disc_wt
SYNC_GATE = 0.75  # the val sync loss under which the sync term is switched on


@dataclass(kw_only=True)
class Wav2LipConfig(RunConfig):
    syncnet: Path
    disc: Path | None = None  # visual_quality_disc.pth to start the discriminator from (with gan)
    gan: bool = False
    disc_lr: float = 1e-4
    sync_weight: float = SYNC_WEIGHT
    disc_weight: float = DISC_WEIGHT
    sync_gate: float = SYNC_GATE


@dataclass
class GenBatch:
    faces: np.ndarray  # (B, 6, T, 96, 96)
    indiv_mels: np.ndarray  # (B, T, 1, 80, 16)
    mel: np.ndarray  # (B, 1, 80, 16)
    target: np.ndarray  # (B, 3, T, 96, 96)


def gen_batch(dataset: ClipDataset, rng: np.random.Generator, size: int) -> GenBatch:
    samples = [dataset.wav2lip_sample(rng) for _ in range(size)]
    return GenBatch(
        faces=np.stack([s.faces for s in samples]),
        indiv_mels=np.stack([s.indiv_mels for s in samples]),
        mel=np.stack([s.mel for s in samples]),
        target=np.stack([s.target for s in samples]),
    )


def fold_time(x):
    """(B, C, T, H, W) -> (T*B, C, H, W), time-major, as the original's sequence forward concatenates."""
    import torch

    return torch.cat([x[:, :, t] for t in range(x.size(2))], dim=0)


def unfold_time(x, batch: int):
    """(T*B, C, H, W) -> (B, C, T, H, W): the inverse of fold_time."""
    import torch

    return torch.stack(torch.split(x, batch, dim=0), dim=2)


def generate(model, batch: GenBatch, device: str):
    """The generator's 5-frame output (B, 3, T, 96, 96) for a batch."""
    import torch

    b = batch.faces.shape[0]
    mels = torch.from_numpy(batch.indiv_mels).to(device)
    mels = torch.cat([mels[:, t] for t in range(mels.size(1))], dim=0)
    faces = fold_time(torch.from_numpy(batch.faces).to(device))
    return unfold_time(model(mels, faces), b)


def sync_loss(expert, mel, generated):
    """The frozen expert's BCE of "in sync" for the generated lower halves (``get_sync_loss``)."""
    import torch

    lower = generated[:, :, :, generated.size(3) // 2 :]
    stacked = torch.cat([lower[:, :, t] for t in range(FRAMES_PER_WINDOW)], dim=1)
    a, v = expert(mel, stacked)
    return cosine_bce(a, v, torch.ones((generated.size(0), 1), device=generated.device))


def adversarial_loss(disc, generated):
    """``perceptual_forward``: BCE of the discriminator calling the generated faces real."""
    import torch
    from torch.nn import functional as F

    pred = disc(fold_time(generated))
    return F.binary_cross_entropy(pred, torch.ones_like(pred))


def disc_losses(disc, real, generated) -> tuple:
    """(real loss, fake loss) of the discriminator on real and (detached) generated faces."""
    import torch
    from torch.nn import functional as F

    p_real = disc(fold_time(real))
    p_fake = disc(fold_time(generated.detach()))
    return F.binary_cross_entropy(p_real, torch.ones_like(p_real)), F.binary_cross_entropy(
        p_fake, torch.zeros_like(p_fake)
    )


def load_expert(path: str | Path, device: str):
    """The frozen SyncNet expert (a wrong file fails naming what it is)."""
    from ..lipsync.checkpoint import load_network

    expert = load_network(path, "syncnet", device)
    for p in expert.parameters():
        p.requires_grad_(False)
    return expert.eval()


def evaluate_wav2lip(model, expert, disc, batches: list[GenBatch], device: str) -> dict[str, float]:
    """Val L1, sync loss (and the discriminator's losses with the GAN), generator in eval mode."""
    import torch
    from torch.nn import functional as F

    was_training = model.training
    model.eval()
    rows = []
    with torch.no_grad():
        for b in batches:
            g = generate(model, b, device)
            target = torch.from_numpy(b.target).to(device)
            row = {
                "l1": float(F.l1_loss(g, target)),
                "sync": float(sync_loss(expert, torch.from_numpy(b.mel).to(device), g)),
            }
            if disc is not None:
                disc.eval()
                real, fake = disc_losses(disc, target, g)
                row |= {
                    "disc_real": float(real),
                    "disc_fake": float(fake),
                    "adversarial": float(adversarial_loss(disc, g)),
                }
                disc.train()
            rows.append(row)
    model.train(was_training)
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def train_wav2lip(cfg: Wav2LipConfig) -> dict[str, object]:
    """Train or fine-tune the generator; writes ``out/wav2lip.pth`` (+ ``visual_quality_disc.pth`` with ``gan``)."""
    import torch
    from torch.nn import functional as F

    from ..lipsync.models import Wav2Lip, Wav2LipDiscQual

    if cfg.sync_weight < 0 or cfg.disc_weight < 0 or cfg.sync_weight + cfg.disc_weight >= 1:
        raise RtF2fError(
            f"loss weights sync {cfg.sync_weight} + disc {cfg.disc_weight} must be >= 0 and sum to under 1",
            "the rest of the weight is the L1 term; the original uses 0.03 and 0.07",
        )
    device = resolve_device(cfg.device)
    train = ClipDataset(cfg.data, "train")
    val = ClipDataset(cfg.data, "val")
    expert = load_expert(cfg.syncnet, device)
    torch.manual_seed(cfg.seed)
    model = Wav2Lip().to(device)
    betas = (0.5, 0.999) if cfg.gan else (0.9, 0.999)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, betas=betas)
    start = restore(cfg.resume, "wav2lip", model, optimizer, device)
    disc = disc_optimizer = None
    if cfg.gan:
        disc = Wav2LipDiscQual().to(device)
        disc_optimizer = torch.optim.Adam(disc.parameters(), lr=cfg.disc_lr, betas=(0.5, 0.999))
        restore(cfg.disc, "disc_qual", disc, disc_optimizer, device)
        disc.train()
    disc_weight = cfg.disc_weight if cfg.gan else 0.0
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt, disc_ckpt = out / FILE_NAMES["wav2lip"], out / FILE_NAMES["disc_qual"]
    config = {"network": "wav2lip" + (" + GAN" if cfg.gan else ""), **cfg.jsonable()}
    record = TrainLog.open(out / "wav2lip_log.json", config, start.step)
    rng = np.random.default_rng([cfg.seed, start.step])
    val_rng = np.random.default_rng([cfg.seed, 1_000_003])
    val_batches = [gen_batch(val, val_rng, cfg.batch_size) for _ in range(cfg.eval_batches)]
    sync_on = [False]

    def evaluate(step: int) -> dict[str, float]:
        metrics = evaluate_wav2lip(model, expert, disc, val_batches, device)
        if not sync_on[0] and metrics["sync"] < cfg.sync_gate:
            sync_on[0] = True
            log.info("val sync loss %.3f < %.2f at step %d: the sync loss joins", metrics["sync"], cfg.sync_gate, step)
        return metrics | {"sync_weight": cfg.sync_weight if sync_on[0] else 0.0}

    first = evaluate(start.step)
    record.add_val(start.step, **first)
    model.train()

    def step() -> dict[str, float]:
        b = gen_batch(train, rng, cfg.batch_size)
        target = torch.from_numpy(b.target).to(device)
        g = generate(model, b, device)
        l1 = F.l1_loss(g, target)
        sw = cfg.sync_weight if sync_on[0] else 0.0
        sl = sync_loss(expert, torch.from_numpy(b.mel).to(device), g) if sw > 0 else torch.zeros((), device=device)
        adv = adversarial_loss(disc, g) if disc is not None and disc_weight > 0 else torch.zeros((), device=device)
        loss = sw * sl + disc_weight * adv + (1.0 - sw - disc_weight) * l1
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        row = {"loss": loss.item(), "l1": l1.item(), "sync": sl.item()}
        if disc is not None:
            disc_optimizer.zero_grad(set_to_none=True)
            real, fake = disc_losses(disc, target, g)
            ((real + fake) / 2).backward()
            disc_optimizer.step()
            row |= {"adversarial": adv.item(), "disc_real": real.item(), "disc_fake": fake.item()}
        if not math.isfinite(row["loss"]):
            raise RtF2fError(f"the training loss became {row['loss']}", "lower --lr or check the dataset's frames")
        return row

    def save(p: Progress) -> None:
        save_training_checkpoint(ckpt, model, optimizer, p)
        if disc is not None:
            save_training_checkpoint(disc_ckpt, disc, disc_optimizer, p)

    end = run_steps(cfg.schedule(len(train)), start, record, step, evaluate, save, "wav2lip")
    return {"checkpoint": ckpt, "step": end.step, "val": record.val, "log": record.path}
