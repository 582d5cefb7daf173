"""Training checkpoints in the released file format, with the optimizer state, so runs resume and files interchange.

A checkpoint written here is ``{"state_dict": {"module." + key: tensor}, "optimizer": optimizer.state_dict(),
"global_step": int, "global_epoch": int}``, the layout of ``wav2lip_gan.pth`` and ``lipsync_expert.pth``: the
inference loader (:mod:`rt_f2f.lipsync.checkpoint`) and ``rt-f2f lipsync`` / ``rt-f2f serve`` read it unchanged,
and a released file resumes here with its optimizer state. Files appear atomically (a crash never leaves half a
checkpoint behind the name a resume would read).
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..audio import atomic_output
from ..errors import ModelFormatError
from ..lipsync.checkpoint import check_state_dict, read_state_dict

FILE_NAMES = {"syncnet": "lipsync_expert.pth", "wav2lip": "wav2lip.pth", "disc_qual": "visual_quality_disc.pth"}


@dataclass
class Progress:
    """Where a run stands: optimizer steps taken and passes over the clip list (the original's counters)."""

    step: int = 0
    epoch: int = 0


def save_training_checkpoint(
    path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None, progress: Progress
) -> Path:
    """Write ``model`` (and the optimizer's state) in the released layout, atomically."""
    state = {
        "state_dict": {"module." + k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "global_step": int(progress.step),
        "global_epoch": int(progress.epoch),
    }
    with atomic_output(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_training_checkpoint(
    path: str | Path, kind: str, model: nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> Progress:
    """Load weights of network ``kind`` into ``model`` (strictly: a wrong file fails naming what it is), the
    optimizer state when the file carries a compatible one, and return the step / epoch to continue from."""
    state = read_state_dict(path)
    check_state_dict(state, kind, source=str(path))
    model.load_state_dict(state, strict=True)
    try:
        raw = torch.load(Path(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError) as exc:  # pragma: no cover - read_state_dict already read it
        raise ModelFormatError(f"{path}: unreadable training state ({exc})", "pass a training checkpoint") from exc
    if optimizer is not None and isinstance(raw, dict) and raw.get("optimizer"):
        try:
            optimizer.load_state_dict(raw["optimizer"])
        except (ValueError, KeyError) as exc:
            # e.g. a released file whose optimizer covered other parameter groups: start the optimizer afresh
            logging.getLogger(__name__).warning("%s: optimizer state not used (%s); starting it afresh", path, exc)
    step = int(raw.get("global_step", 0) or 0) if isinstance(raw, dict) else 0
    epoch = int(raw.get("global_epoch", 0) or 0) if isinstance(raw, dict) else 0
    return Progress(step, epoch)


def restore(
    path: str | Path | None, kind: str, model: nn.Module, optimizer: torch.optim.Optimizer, device: str
) -> Progress:
    """Resume ``model`` and ``optimizer`` from ``path`` onto ``device`` (a fresh start when ``path`` is None)."""
    if path is None:
        return Progress()
    lrs = [g["lr"] for g in optimizer.param_groups]
    progress = load_training_checkpoint(path, kind, model, optimizer)
    for group, lr in zip(optimizer.param_groups, lrs, strict=True):
        group["lr"] = lr  # the learning rate asked for now, not the one saved with the optimizer state
    model.to(device)
    for state in optimizer.state.values():  # optimizer state loads onto the CPU
        for k, v in state.items():
            if isinstance(v, torch.Tensor) and k != "step":
                state[k] = v.to(device)
    logging.getLogger(__name__).info("resumed %s from %s at step %d", kind, path, progress.step)
    return progress
