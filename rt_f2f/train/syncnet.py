"""Training the lip-sync expert (``rt-f2f train syncnet``), as ``color_syncnet_train.py`` does.

SyncNet embeds 5 lower-half face frames and the 0.2 s of mel under them; training pulls in-sync pairs together and
pushes shifted pairs apart with binary cross-entropy on the cosine similarity of the two (ReLU'd, normalised, so
the similarity lies in [0, 1] and reads as a probability of being in sync). Adam at 1e-4, batches of 64 as in the
original's hparams. Evaluation reports the val loss and the in-sync / off-sync accuracy at similarity 0.5.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .dataset import ClipDataset
from .log import TrainLog
from .loop import RunConfig, resolve_device, run_steps
from .state import FILE_NAMES, restore, save_training_checkpoint

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class SyncNetConfig(RunConfig):
    batch_size: int = 64  # hparams.syncnet_batch_size


@dataclass
class SyncBatch:
    faces: np.ndarray  # (B, 15, 48, 96)
    mel: np.ndarray  # (B, 1, 80, 16)
    labels: np.ndarray  # (B, 1) float32: 1 in sync, 0 off sync


def sync_batch(dataset: ClipDataset, rng: np.random.Generator, size: int) -> SyncBatch:
    samples = [dataset.sync_sample(rng) for _ in range(size)]
    return SyncBatch(
        faces=np.stack([s.faces for s in samples]),
        mel=np.stack([s.mel for s in samples]),
        labels=np.array([[float(s.in_sync)] for s in samples], np.float32),
    )


def cosine_bce(audio, faces, labels):  # torch tensors in, scalar tensor out
    """The original's ``cosine_loss``: BCE of the embeddings' cosine similarity against the in-sync label."""
    from torch.nn import functional as F

    d = F.cosine_similarity(audio, faces).clamp(0.0, 1.0)  # rounding can step past 1; BCE clamps its log at -100
    return F.binary_cross_entropy(d.unsqueeze(1), labels)


def evaluate_syncnet(model, batches: list[SyncBatch], device: str) -> dict[str, float]:
    """Mean BCE and the accuracy of ``similarity > 0.5`` as the in-sync verdict, over fixed val batches."""
    import torch
    from torch.nn import functional as F

    was_training = model.training
    model.eval()
    losses, correct, total = [], 0, 0
    with torch.no_grad():
        for b in batches:
            a, v = model(torch.from_numpy(b.mel).to(device), torch.from_numpy(b.faces).to(device))
            y = torch.from_numpy(b.labels).to(device)
            losses.append(float(cosine_bce(a, v, y)))
            d = F.cosine_similarity(a, v).unsqueeze(1)
            correct += int(((d > 0.5).float() == y).sum())
            total += y.numel()
    model.train(was_training)
    return {"loss": float(np.mean(losses)), "accuracy": correct / max(1, total)}


def train_syncnet(cfg: SyncNetConfig) -> dict[str, object]:
    """Train (or resume) the expert; writes ``out/lipsync_expert.pth``, ``out/syncnet_log.json`` and its PNG."""
    import torch

    from ..lipsync.models import SyncNetColor

    device = resolve_device(cfg.device)
    train = ClipDataset(cfg.data, "train")
    val = ClipDataset(cfg.data, "val")
    torch.manual_seed(cfg.seed)
    model = SyncNetColor().to(device)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    start = restore(cfg.resume, "syncnet", model, optimizer, device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / FILE_NAMES["syncnet"]
    record = TrainLog.open(out / "syncnet_log.json", {"network": "syncnet", **cfg.jsonable()}, start.step)
    rng = np.random.default_rng([cfg.seed, start.step])
    val_rng = np.random.default_rng([cfg.seed, 1_000_003])
    val_batches = [sync_batch(val, val_rng, cfg.batch_size) for _ in range(cfg.eval_batches)]
    model.train()

    def step() -> dict[str, float]:
        b = sync_batch(train, rng, cfg.batch_size)
        a, v = model(torch.from_numpy(b.mel).to(device), torch.from_numpy(b.faces).to(device))
        loss = cosine_bce(a, v, torch.from_numpy(b.labels).to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": loss.item()}

    end = run_steps(
        cfg.schedule(len(train)),
        start,
        record,
        step,
        lambda s: evaluate_syncnet(model, val_batches, device),
        lambda p: save_training_checkpoint(ckpt, model, optimizer, p),
        "syncnet",
    )
    return {"checkpoint": ckpt, "step": end.step, "val": record.val[-1] if record.val else {}, "log": record.path}
