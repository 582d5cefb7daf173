"""Random-weight checkpoints in the released Wav2Lip file format, for tests on machines without the real weights.

The file layout copies the released ``.pth`` files: ``torch.save`` of ``{"state_dict": {"module." + key: tensor},
"optimizer": ..., "global_step": ..., "global_epoch": ...}`` (the ``module.`` prefix comes from the DataParallel
wrapper used in training). Outputs of these models say nothing about lip-sync quality.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import cache, lru_cache
from pathlib import Path

from torch import nn

from rt_f2f.lipsync.checkpoint import save_checkpoint
from rt_f2f.lipsync.models import ARCHITECTURES, random_weights_


def random_network(kind: str = "wav2lip", seed: int = 0) -> nn.Module:
    """A network with random weights whose outputs spread over (0, 1) (see ``random_weights_``), in eval mode."""
    return random_weights_(ARCHITECTURES[kind](), seed)


def write_random_checkpoint(path: str | Path, kind: str = "wav2lip", seed: int = 0, legacy_format: bool = True) -> Path:
    """Write a random-weight checkpoint of ``kind`` ("wav2lip" | "syncnet" | "disc_qual") in the released format.

    ``legacy_format`` writes torch's pre-1.6 (non-zip) serialisation: the released files were saved by the torch
    1.x of the original training code, and loaders must keep reading that format.
    """
    if kind not in ARCHITECTURES:
        raise ValueError(f"unknown kind {kind!r}; expected one of {sorted(ARCHITECTURES)}")
    model = random_network(kind, seed)
    return save_checkpoint(model, path, global_step=1000 + seed, global_epoch=10, legacy_format=legacy_format)


@lru_cache(maxsize=1)
def _scratch() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="rt-f2f-lipsync-test-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


@cache
def shared_checkpoint(kind: str = "wav2lip", seed: int = 0) -> Path:
    """A random checkpoint written once per test process and shared by every test module (removed at exit).

    Read-only by convention: tests that need to damage a checkpoint write their own with write_random_checkpoint.
    """
    return write_random_checkpoint(_scratch() / f"{kind}-{seed}.pth", kind, seed)


def shared_engine_cache() -> Path:
    """An engine cache folder shared by the test process, so the ONNX export of shared_checkpoint() happens once."""
    folder = _scratch() / "engines"
    folder.mkdir(exist_ok=True)
    return folder
