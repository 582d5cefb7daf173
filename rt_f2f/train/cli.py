"""``rt-f2f train syncnet|wav2lip|lipgan``: train the lip-sync expert or a generator on a preprocessed dataset.

The main path is fine-tuning the released checkpoints on ~10 minutes of one speaker: ``rt-f2f preprocess`` the
footage, then ``rt-f2f train wav2lip --resume wav2lip_gan.pth --syncnet lipsync_expert.pth --gan``. Everything heavy
(torch, cv2, matplotlib) loads inside ``run`` so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import ModelMissingError, RtF2fError


def _common(p: argparse.ArgumentParser, batch: int) -> None:
    p.add_argument("--data", required=True, help="dataset folder from `rt-f2f preprocess` (train.txt, val.txt)")
    p.add_argument("--out", required=True, help="folder for the checkpoint, the JSON log and the loss plot")
    p.add_argument("--steps", type=int, default=10_000, help="optimizer steps to take in this run (default: 10000)")
    p.add_argument("--batch_size", type=int, default=batch, help=f"samples per step (default: {batch})")
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (default: 1e-4)")
    p.add_argument("--eval_every", type=int, default=1000, help="evaluate on the val split every N steps")
    p.add_argument("--eval_batches", type=int, default=10, help="val batches per evaluation (default: 10)")
    p.add_argument("--checkpoint_every", type=int, default=1000, help="write the checkpoint every N steps")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda when present)")
    p.add_argument("--seed", type=int, default=0, help="seed for sampling and initialisation")


def add_subcommand(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="train Wav2Lip's lip-sync expert or generator on your own footage",
        description="Train SyncNet (the lip-sync expert) or the Wav2Lip generator on a dataset made by "
        "`rt-f2f preprocess`, with the original losses; checkpoints are in the released format.",
    )
    sub = p.add_subparsers(dest="network", metavar="NETWORK", required=True)
    s = sub.add_parser(
        "syncnet",
        help="the lip-sync expert (lipsync_expert.pth)",
        description="SyncNet: 5 lower-half face frames vs 0.2 s of mel, cosine similarity + BCE on in-sync vs "
        "shifted pairs. Writes OUT/lipsync_expert.pth, OUT/syncnet_log.json and OUT/syncnet_log.png.",
    )
    _common(s, 64)
    s.add_argument("--resume", default=None, help="continue from this expert checkpoint (with its optimizer)")
    s.set_defaults(func=run_syncnet)
    w = sub.add_parser(
        "wav2lip",
        help="the generator (wav2lip.pth), optionally with the visual-quality GAN",
        description="The generator: L1 + the frozen expert's sync loss (weight 0.03, once the val sync loss is "
        "under 0.75) + with --gan the visual-quality discriminator's loss (weight 0.07). Writes OUT/wav2lip.pth "
        "(and OUT/visual_quality_disc.pth with --gan), OUT/wav2lip_log.json and OUT/wav2lip_log.png.",
    )
    _common(w, 16)
    w.add_argument("--syncnet", required=True, help="the expert: lipsync_expert.pth or one from `train syncnet`")
    w.add_argument("--resume", default=None, help="start from this generator (e.g. wav2lip_gan.pth): fine-tuning")
    w.add_argument("--gan", action="store_true", help="train with the visual-quality discriminator (Wav2Lip-GAN)")
    w.add_argument("--disc", default=None, help="with --gan: start the discriminator from visual_quality_disc.pth")
    w.add_argument("--sync_weight", type=float, default=0.03, help="weight of the sync loss (default: 0.03)")
    w.add_argument("--disc_weight", type=float, default=0.07, help="weight of the GAN loss (default: 0.07)")
    w.add_argument(
        "--sync_gate", type=float, default=0.75,
        help="the sync loss joins once the val sync loss is below this (default: 0.75; inf = from the start)",
    )  # fmt: skip
    w.set_defaults(func=run_wav2lip)
    g = sub.add_parser(
        "lipgan",
        help="LipGAN's generator and sync discriminator (Keras .h5 out)",
        description="LipGAN (ACM MM 2019): L1 reconstruction + 0.01 x the discriminator's contrastive loss; the "
        "discriminator learns in-sync vs off-sync face/audio pairs. Writes OUT/lipgan_gen.h5, OUT/lipgan_disc.h5 "
        "(the released Keras layout) and OUT/lipgan_log.json. Keep --lr at the original's 1e-4: on synthetic data 3e-4 "
        "and up left the discriminator at the trivial solution (every distance 0.5).",
    )
    _common(g, 16)
    g.add_argument("--resume_gen", type=Path, help="start the generator from this .h5 (e.g. the released weights)")
    g.add_argument("--resume_disc", type=Path, help="start the discriminator from this .h5")
    g.add_argument("--disc_only", action="store_true", help="train only the discriminator (the sync critic)")
    g.set_defaults(func=run_lipgan)
    return p


def _path(value: str | None, what: str) -> Path | None:
    if value is None:
        return None
    path = Path(value)
    if not path.is_file():
        raise ModelMissingError(f"{what} {path}: no such file", "check the path")
    return path


def _check(args: argparse.Namespace) -> None:
    for name in ("steps", "batch_size", "eval_every", "eval_batches", "checkpoint_every"):
        if getattr(args, name) < (0 if name == "steps" else 1):
            raise RtF2fError(f"--{name} must be positive, got {getattr(args, name)}")
    if not args.lr > 0:
        raise RtF2fError(f"--lr must be positive, got {args.lr}")


def _report(network: str, result: dict[str, object]) -> None:
    val = result["val"]
    last = val[-1] if isinstance(val, list) and val else val
    shown = ", ".join(f"{k} {v:.4f}" for k, v in (last or {}).items() if k != "step")
    print(f"wrote {result['checkpoint']} ({network}, step {result['step']}); val: {shown}; log {result['log']}",
          file=sys.stderr)  # fmt: skip


def run_lipgan(args: argparse.Namespace) -> int:
    from .lipgan import run

    _check(args)
    if args.steps < 1:
        raise RtF2fError(f"--steps must be at least 1, got {args.steps}")
    return run(args)


def run_syncnet(args: argparse.Namespace) -> int:
    from .syncnet import SyncNetConfig, train_syncnet

    _check(args)
    cfg = SyncNetConfig(
        data=Path(args.data), out=Path(args.out), resume=_path(args.resume, "--resume"), steps=args.steps,
        batch_size=args.batch_size, lr=args.lr, eval_every=args.eval_every, eval_batches=args.eval_batches,
        checkpoint_every=args.checkpoint_every, device=args.device, seed=args.seed,
    )  # fmt: skip
    _report("syncnet", train_syncnet(cfg))
    return 0


def run_wav2lip(args: argparse.Namespace) -> int:
    from .wav2lip import Wav2LipConfig, train_wav2lip

    _check(args)
    if args.disc and not args.gan:
        raise RtF2fError("--disc is the discriminator for --gan", "add --gan, or drop --disc")
    cfg = Wav2LipConfig(
        data=Path(args.data), syncnet=_path(args.syncnet, "--syncnet"), out=Path(args.out),
        resume=_path(args.resume, "--resume"), disc=_path(args.disc, "--disc"), gan=args.gan, steps=args.steps,
        batch_size=args.batch_size, lr=args.lr, sync_weight=args.sync_weight, disc_weight=args.disc_weight,
        sync_gate=args.sync_gate, eval_every=args.eval_every, eval_batches=args.eval_batches,
        checkpoint_every=args.checkpoint_every, device=args.device, seed=args.seed,
    )  # fmt: skip
    _report("wav2lip", train_wav2lip(cfg))
    return 0
