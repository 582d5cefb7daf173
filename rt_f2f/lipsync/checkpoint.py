"""Loading the released Wav2Lip checkpoints, strictly, with errors that say what the file really is.

The released ``.pth`` files are ``torch.save`` dicts ``{"state_dict", "optimizer", "global_step", "global_epoch"}``
written from a ``DataParallel`` model, so every weight name starts with ``module.``. Users swap these files around
(``wav2lip.pth``, ``wav2lip_gan.pth``, ``lipsync_expert.pth``, ``visual_quality_disc.pth``, an s3fd file), so a
wrong file must fail loudly and say which one it is rather than load half the weights.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelFormatError, ModelMissingError
from ..models.store import sha256_of
from .models import ARCHITECTURES

KIND_NAMES = {
    "wav2lip": "the Wav2Lip generator (wav2lip.pth / wav2lip_gan.pth)",
    "syncnet": "the SyncNet lip-sync expert (lipsync_expert.pth)",
    "disc_qual": "the visual-quality discriminator (visual_quality_disc.pth)",
}
_MAX_LISTED = 5


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, remembered per (path, size, mtime) so engine caches can key on it cheaply."""
    p = Path(path).resolve()
    st = p.stat()
    return _cached_sha256(str(p), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=32)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_of(Path(path))


@lru_cache(maxsize=1)
def _expected_shapes() -> dict[str, dict[str, tuple[int, ...]]]:
    """Key -> shape for each architecture, taken from the module definitions (built on the meta device: no memory)."""
    with torch.device("meta"):
        return {kind: {k: tuple(v.shape) for k, v in cls().state_dict().items()} for kind, cls in ARCHITECTURES.items()}


def read_state_dict(path: str | Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The weights in a checkpoint file, without the ``module.`` prefix, on the CPU.

    Loads with ``weights_only=True`` (no arbitrary code from the pickle); the released files pass that. A file
    that needs full unpickling is refused unless ``trust_pickle`` is set by a user who trusts its source.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelMissingError(
            f"lip-sync checkpoint not found: {p}", "run `rt-f2f models pull wav2lip` on a machine with internet"
        )
    if p.stat().st_size == 0:
        raise ModelFormatError(f"{p} is empty (0 bytes)", "the download was interrupted: pull it again")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as exc:
        # the weights-only unpickler names the class it refused; any other unpickling error means a damaged file
        if not trust_pickle and "Unsupported global" in str(exc):
            raise ModelFormatError(
                f"{p} holds pickled objects other than tensors, so it was not loaded safely",
                "if you trust where the file came from, load it with trust_pickle=True",
            ) from exc
        raise ModelFormatError(
            f"{p} is not a readable torch checkpoint (UnpicklingError)",
            "the file may be truncated or of another format: pull it again",
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ModelFormatError(
            f"{p} is not a readable torch checkpoint ({type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]})",
            "the file may be truncated or of another format: pull it again",
        ) from exc
    state = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFormatError(
            f"{p} holds no state dict of tensors (found {type(obj).__name__})",
            "pass a released Wav2Lip checkpoint: a dict with a 'state_dict' of weights",
        )
    return {_strip(k): v for k, v in state.items()}


def _strip(key: str) -> str:
    return key[len("module.") :] if key.startswith("module.") else key


def identify(state: Mapping[str, Any]) -> str | None:
    """Which of the three networks a state dict belongs to (exact key set), or None."""
    keys = set(state)
    for kind, shapes in _expected_shapes().items():
        if keys == set(shapes):
            return kind
    return None


def check_state_dict(state: Mapping[str, torch.Tensor], kind: str, source: str = "checkpoint") -> None:
    """Raise ModelFormatError naming the mismatch when ``state`` does not fit architecture ``kind`` exactly."""
    expected = _expected_shapes()[kind]
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        actual = identify(state)
        if "conv1_1.weight" in state and "conv3_3_norm.weight" in state:
            raise ModelFormatError(
                f"{source} is the S3FD face detector (s3fd.pth), not {KIND_NAMES[kind]}",
                "give the face detector's file to the face detector, and wav2lip.pth to the lip-sync engine",
            )
        if actual is not None and actual != kind:
            raise ModelFormatError(
                f"{source} is {KIND_NAMES[actual]}, not {KIND_NAMES[kind]}",
                "point the lip-sync engine at wav2lip.pth or wav2lip_gan.pth",
            )
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:_MAX_LISTED])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:_MAX_LISTED])})")
        raise ModelFormatError(
            f"{source} does not match {KIND_NAMES[kind]}: " + "; ".join(parts),
            "the file is another model or a modified architecture: use the released checkpoint",
        )
    wrong = [
        f"{k}: file {tuple(state[k].shape)} vs model {shape}"
        for k, shape in expected.items()
        if tuple(state[k].shape) != shape
    ]
    if wrong:
        raise ModelFormatError(
            f"{source} has {len(wrong)} weights of the wrong shape for {KIND_NAMES[kind]}: "
            + "; ".join(wrong[:_MAX_LISTED]),
            "the file is a different variant of the network: use the released checkpoint",
        )


def load_network(
    path: str | Path, kind: str = "wav2lip", device: str | torch.device = "cpu", trust_pickle: bool = False
) -> nn.Module:
    """One of the three networks, strictly loaded from a released checkpoint, in eval mode on ``device``."""
    if kind not in ARCHITECTURES:
        raise ValueError(f"unknown network kind {kind!r}; expected one of {sorted(ARCHITECTURES)}")
    state = read_state_dict(path, trust_pickle=trust_pickle)
    check_state_dict(state, kind, source=str(path))
    model = ARCHITECTURES[kind]()
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def load_wav2lip(path: str | Path, device: str | torch.device = "cpu", trust_pickle: bool = False) -> nn.Module:
    """The Wav2Lip generator from ``wav2lip.pth`` / ``wav2lip_gan.pth`` (fp32, eval mode)."""
    return load_network(path, "wav2lip", device, trust_pickle)


def save_checkpoint(
    model: nn.Module, path: str | Path, global_step: int = 0, global_epoch: int = 0, legacy_format: bool = True
) -> Path:
    """Write ``model`` in the released file layout, so anything that reads wav2lip.pth reads it too.

    ``{"state_dict": {"module." + key: tensor}, "optimizer": ..., "global_step", "global_epoch"}``; the optimizer
    entry is a fresh Adam's state (the released files carry their training state there). ``legacy_format`` uses
    torch's pre-1.6 serialisation, which the released files (saved by the original torch 1.x code) use.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    torch.save(
        {
            "state_dict": {"module." + k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "global_step": int(global_step),
            "global_epoch": int(global_epoch),
        },
        out,
        _use_new_zipfile_serialization=not legacy_format,
    )
    return out
