"""``rt-f2f train lipgan``: LipGAN's generator and sync discriminator with the original losses.

The recipe is the ``fully_pythonic`` branch's ``train.py``, on the dataset layout every trainer here shares
(:mod:`rt_f2f.train.dataset`):

- a sample is one face frame (the ground truth), a reference frame of the same clip at least 6 frames away
  (``choose_ip_frame``), and the 27 mel steps around the ground truth (:func:`rt_f2f.lipsync.lipgan_audio.
  training_window`); the generator sees the reference and the ground truth with its lower half zeroed;
- the discriminator outputs the distance between L2-normalised face and audio embeddings and is trained with the
  contrastive loss: in-sync pairs (a real face and its audio) towards 0, off-sync pairs past the margin, where an
  off-sync pair is either a generated face with its audio or a real face with another sample's audio (the batch's
  audio rolled), one of the two at random each step, as the original does;
- the generator minimises L1 to the ground truth plus 0.01 x the contrastive loss of its faces as in-sync (the
  discriminator frozen for that step), the original's ``loss_weights=[1., .01]``.

Networks are written as Keras ``.h5`` files in the released layout (``OUT/lipgan_gen.h5``, ``OUT/lipgan_disc.h5``),
so ``rt-f2f lipsync --checkpoint_path OUT/lipgan_gen.h5`` and the original Keras code both read them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .loop import RunConfig

if TYPE_CHECKING:  # the dataset pulls in scipy and cv2: imported where training runs, so --help stays instant
    import torch
    from torch import nn

    from .dataset import Clip, ClipDataset

MIN_REFERENCE_DISTANCE = 6  # frames between ground truth and reference (train.py's choose_ip_frame)
DISC_WEIGHT = 0.01  # the combined model's weight on the discriminator's loss
ROLL = 10  # train.py rolls the audio by 10 samples of the batch to make off-sync pairs (here: len(batch) // 2 min)


@dataclass
class LipGANSample:
    """``faces`` (6, 96, 96): reference then masked ground truth; ``mel`` (1, 80, 27); ``target`` (3, 96, 96)."""

    faces: np.ndarray
    mel: np.ndarray
    target: np.ndarray
    clip: str
    frame: int
    reference_frame: int


def lipgan_sample(data: ClipDataset, rng: np.random.Generator, clip: Clip | None = None) -> LipGANSample:
    """One training sample drawn as ``train.py`` draws it (retried where a frame or the audio is missing)."""
    from ..lipsync.lipgan_audio import training_window
    from .dataset import FPS, NoSampleError

    for _ in range(1000):
        c = clip if clip is not None else data.clips[int(rng.integers(len(data.clips)))]
        frame = c.frame_ids[int(rng.integers(len(c.frame_ids)))]
        far = [f for f in c.frame_ids if abs(f - frame) >= MIN_REFERENCE_DISTANCE]
        if not far:
            continue
        reference = far[int(rng.integers(len(far)))]
        # the mel steps per frame follow the dataset's frame rate (train.py hard-codes LRS2's 25 fps)
        mel = training_window(data.mel(c).T, round(frame * FPS / data.fps))
        images = data.read_window(c, [frame, reference])
        if mel is None or images is None:
            continue
        gt, ref = (im.astype(np.float32).transpose(2, 0, 1) / 255.0 for im in images)
        masked = gt.copy()
        masked[:, data.img_size // 2 :] = 0.0
        return LipGANSample(
            faces=np.concatenate([ref, masked]),
            mel=np.ascontiguousarray(mel[None]).astype(np.float32),
            target=gt,
            clip=c.name,
            frame=frame,
            reference_frame=reference,
        )
    raise NoSampleError(
        f"{data.root} ({data.split}): no LipGAN sample in 1000 draws; clips need frames {MIN_REFERENCE_DISTANCE} "
        "apart and 0.34 s of audio around a frame",
        "preprocess longer clips (a few seconds each)",
    )


def batch(data: ClipDataset, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    samples = [lipgan_sample(data, rng) for _ in range(size)]
    return tuple(np.stack([getattr(s, k) for s in samples]) for k in ("faces", "mel", "target"))  # type: ignore[return-value]


@dataclass(kw_only=True)
class LipGANConfig(RunConfig):
    """``resume``: the generator .h5 to start from (e.g. the released weights); ``resume_disc``: the discriminator's."""

    resume_disc: Path | None = None
    disc_weight: float = DISC_WEIGHT
    # False: only the discriminator learns, on real faces with their own and with other samples' audio (pre-training
    # the sync critic; no generator runs, so it is several times cheaper per step)
    train_generator: bool = True


@dataclass
class LipGANResult:
    step: int
    generator: Path
    discriminator: Path
    log: Path
    train: list[dict[str, float]] = field(default_factory=list)
    val: list[dict[str, float]] = field(default_factory=list)


def sync_distances(disc: nn.Module, faces: torch.Tensor, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The discriminator's distances for each real face with its own audio (in sync) and with another sample's
    audio (off sync: the batch's audio rolled, by 10 as train.py does, or by half a small batch).

    Each face and each audio window is embedded once and the embeddings are paired twice: the discriminator has no
    batch statistics (instance norms only), so this equals two calls with the rolled mel at half the cost.
    """
    import torch

    from ..lipsync.lipgan import embedding_distance

    shift = ROLL if len(mel) > ROLL else max(1, len(mel) // 2)
    face, audio = disc.embed(faces, mel)
    return embedding_distance(face, audio), embedding_distance(face, torch.roll(audio, shift, dims=0))


def separation(d_in: np.ndarray, d_off: np.ndarray) -> float:
    """How often an off-sync pair lies farther apart than an in-sync one, over all pairs of the two (ties count
    half): 0.5 is chance, 1 a threshold that splits them perfectly (the area under the ROC curve)."""
    d_in, d_off = np.ravel(d_in)[:, None], np.ravel(d_off)[None, :]
    return float((d_off > d_in).mean() + 0.5 * (d_off == d_in).mean())


def evaluate(
    gen: nn.Module | None, disc: nn.Module, data: ClipDataset, batches: int, size: int, seed: int, device: torch.device
) -> dict[str, float]:
    """Held-out figures: L1 of the generator (unless ``gen`` is None), and the discriminator's distances,
    contrastive loss and ``separation`` (:func:`separation`, over all the batches' pairs) on real faces with their own
    audio (in sync) against other samples' audio (off sync). Same draws every call (``seed``)."""
    import torch

    from ..lipsync.lipgan import contrastive_loss

    rng = np.random.default_rng(seed)
    sums = {"l1": 0.0} if gen is not None else {}
    sums.update(d_in_sync=0.0, d_off_sync=0.0, contrastive=0.0)
    all_in, all_off = [], []
    for net in (gen, disc):
        if net is not None:
            net.eval()
    with torch.no_grad():
        for _ in range(batches):
            faces, mel, target = (torch.from_numpy(a).to(device) for a in batch(data, size, rng))
            if gen is not None:
                sums["l1"] += torch.nn.functional.l1_loss(gen(faces, mel), target).item()
            d_in, d_off = sync_distances(disc, target, mel)
            sums["d_in_sync"] += d_in.mean().item()
            sums["d_off_sync"] += d_off.mean().item()
            loss = contrastive_loss(
                torch.cat([d_in, d_off]), torch.cat([torch.zeros(len(d_in)), torch.ones(len(d_off))])
            )
            sums["contrastive"] += loss.item()
            all_in.append(d_in.cpu().numpy())
            all_off.append(d_off.cpu().numpy())
    for net in (gen, disc):
        if net is not None:
            net.train()
    figures = {k: v / batches for k, v in sums.items()}
    figures["separation"] = separation(np.concatenate(all_in), np.concatenate(all_off))
    return figures


def train_lipgan(cfg: LipGANConfig, progress: Callable[[str], None] | None = None) -> LipGANResult:
    """Train for ``cfg.steps`` steps; writes the two ``.h5`` files and a JSON log in ``cfg.out``."""
    import torch

    from ..lipsync.lipgan import LipGAN, LipGANDiscriminator, contrastive_loss
    from ..lipsync.lipgan_h5 import load_lipgan_network, write_keras_h5

    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if cfg.device == "auto" else cfg.device))  # fmt: skip
    from .dataset import ClipDataset

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    train_data = ClipDataset(cfg.data, "train")
    val_data = ClipDataset(cfg.data, "val")
    gen = load_lipgan_network(cfg.resume, "lipgan") if cfg.resume else LipGAN()
    disc = load_lipgan_network(cfg.resume_disc, "lipgan_disc") if cfg.resume_disc else LipGANDiscriminator()
    gen, disc = gen.to(device).train(), disc.to(device).train()
    opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.lr)
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr)
    cfg.out.mkdir(parents=True, exist_ok=True)
    result = LipGANResult(0, cfg.out / "lipgan_gen.h5", cfg.out / "lipgan_disc.h5", cfg.out / "lipgan_log.json")

    def save() -> None:
        write_keras_h5(gen.cpu(), result.generator, full_model=True)
        write_keras_h5(disc.cpu(), result.discriminator, full_model=True)
        gen.to(device)
        disc.to(device)
        log = {"config": {k: str(v) for k, v in asdict(cfg).items()}, "train": result.train, "val": result.val}
        result.log.write_text(json.dumps(log, indent=1))

    def evaluate_now(step: int) -> None:
        g = gen if cfg.train_generator else None
        figures = evaluate(g, disc, val_data, cfg.eval_batches, cfg.batch_size, cfg.seed + 1, device)
        result.val.append({"step": step, **figures})
        if progress:
            progress(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in figures.items()))

    evaluate_now(0)
    started = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        faces, mel, target = (torch.from_numpy(a).to(device) for a in batch(train_data, cfg.batch_size, rng))
        ones, zeros = torch.ones(len(mel), device=device), torch.zeros(len(mel), device=device)
        # discriminator: real faces with their audio in sync; off sync either the generated faces or real faces
        # with other samples' audio, one of the two at random per step (only the latter without the generator)
        if cfg.train_generator and rng.random() < 0.5:
            with torch.no_grad():
                fakes = gen(faces, mel)
            in_sync, off = disc(target, mel), disc(fakes, mel)
        else:
            in_sync, off = sync_distances(disc, target, mel)
        loss_d = contrastive_loss(in_sync, zeros) + contrastive_loss(off, ones)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        row = {"step": float(step), "disc": loss_d.item()}
        if cfg.train_generator:
            disc.requires_grad_(False)
            fakes = gen(faces, mel)
            l1 = torch.nn.functional.l1_loss(fakes, target)
            adv = contrastive_loss(disc(fakes, mel), zeros)
            loss_g = l1 + cfg.disc_weight * adv
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            disc.requires_grad_(True)
            row.update(l1=l1.item(), adv=adv.item())
        result.train.append(row)
        result.step = step
        if step % cfg.eval_every == 0 or step == cfg.steps:
            evaluate_now(step)
        if step % cfg.checkpoint_every == 0:
            save()
    save()
    if progress:
        progress(f"{cfg.steps} steps in {time.perf_counter() - started:.0f} s")
    return result


def run(args: argparse.Namespace) -> int:
    cfg = LipGANConfig(
        data=Path(args.data), out=Path(args.out), steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        eval_every=args.eval_every, eval_batches=args.eval_batches, checkpoint_every=args.checkpoint_every,
        device=args.device, seed=args.seed, resume=args.resume_gen, resume_disc=args.resume_disc,
        train_generator=not args.disc_only,
    )  # fmt: skip
    result = train_lipgan(cfg, progress=lambda m: print(m, file=sys.stderr))
    last = result.val[-1]
    l1 = f"L1 {last['l1']:.4f}, " if "l1" in last else ""
    print(
        f"wrote {result.generator} and {result.discriminator} (step {result.step}); val: {l1}"
        f"distance in sync {last['d_in_sync']:.3f} vs off sync {last['d_off_sync']:.3f} (separation "
        f"{last['separation']:.2f}, 0.5 = chance); log {result.log}",
        file=sys.stderr,
    )
    return 0
