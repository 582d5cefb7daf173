"""The step loop both trainers share: progress bar, periodic logging, evaluation and checkpoints, clean resume.

A trainer hands in what one optimisation step does, how to evaluate, and how to save; this module decides when.
Evaluation and a checkpoint always happen at the end of a run, so every finished run leaves a loadable file and a
val figure for its last step, and the JSON log and loss plot are rewritten at each evaluation.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from .log import TrainLog
from .state import Progress

LOG_EVERY = 10  # steps averaged into one train row of the log


@dataclass(kw_only=True)
class RunConfig:
    """Settings every trainer shares (the CLI's common flags)."""

    data: Path
    out: Path
    resume: Path | None = None
    steps: int = 10_000
    batch_size: int = 16
    lr: float = 1e-4
    eval_every: int = 1000
    eval_batches: int = 10
    checkpoint_every: int = 1000
    device: str = "auto"
    seed: int = 0
    progress: bool = True

    def schedule(self, clips: int) -> Schedule:
        return Schedule(
            self.steps, self.eval_every, self.checkpoint_every, steps_per_epoch(clips, self.batch_size), self.progress
        )

    def jsonable(self) -> dict[str, object]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


@dataclass
class Schedule:
    steps: int  # steps to take in this run
    eval_every: int
    checkpoint_every: int
    steps_per_epoch: int  # an epoch is one pass over the clip list, as the original's DataLoader counted it
    progress: bool = True


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        from ..errors import BackendUnavailableError

        raise BackendUnavailableError("torch has no CUDA device here", "pass --device cpu")
    return device


def steps_per_epoch(clips: int, batch_size: int) -> int:
    return max(1, math.ceil(clips / batch_size))


def run_steps(
    schedule: Schedule,
    start: Progress,
    log: TrainLog,
    step: Callable[[], dict[str, float]],
    evaluate: Callable[[int], dict[str, float]],
    save: Callable[[Progress], None],
    desc: str,
) -> Progress:
    """Take ``schedule.steps`` steps from ``start``; returns where the run ended."""
    from tqdm import tqdm

    progress = Progress(start.step, start.epoch)
    sums: dict[str, float] = {}
    count = 0
    last_val: dict[str, float] = {}
    with tqdm(total=schedule.steps, desc=desc, unit="step", file=sys.stderr, disable=not schedule.progress) as bar:
        for k in range(schedule.steps):
            losses = step()
            progress.step += 1
            if progress.step % schedule.steps_per_epoch == 0:
                progress.epoch += 1
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + value
            count += 1
            if count == LOG_EVERY or k == schedule.steps - 1:
                log.add_train(progress.step, **{n: v / count for n, v in sums.items()})
                bar.set_postfix({n: f"{v / count:.4f}" for n, v in sums.items()}, refresh=False)
                sums, count = {}, 0
            last = k == schedule.steps - 1
            if last or progress.step % schedule.eval_every == 0:
                last_val = evaluate(progress.step)
                log.add_val(progress.step, **last_val)
                log.save()
            if last or progress.step % schedule.checkpoint_every == 0:
                save(progress)
            bar.update(1)
    if schedule.steps == 0:
        save(progress)
        log.save()
    return progress
