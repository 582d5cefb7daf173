"""Export the Wav2Lip generator to ONNX with a dynamic batch axis.

The ONNX file is the portable form of the checkpoint: ONNX Runtime runs it on any CPU, and TensorRT builds its
engines from it. Files live in the engine cache under the checkpoint's SHA-256, so a changed checkpoint can never
be served by a stale export. The ``onnxruntime`` and ``tensorrt`` backends export on first use through
``ensure_onnx``; ``python -m engines.export_onnx`` does it ahead of time.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelMissingError
from ..models.store import default_home
from .checkpoint import file_sha256, load_wav2lip

log = logging.getLogger(__name__)

OPSET = 17
INPUT_NAMES = ("mel", "faces")
OUTPUT_NAME = "frames"
BATCH_AXIS = "batch"


def engine_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """Where built engines live: ``$RT_F2F_HOME/engines`` unless told otherwise."""
    return Path(cache_dir) if cache_dir is not None else default_home() / "engines"


def onnx_cache_path(checkpoint: str | Path, cache_dir: str | Path | None = None, opset: int = OPSET) -> Path:
    """Cache path of the checkpoint's ONNX export, keyed by the checkpoint's SHA-256 and the opset."""
    digest = file_sha256(checkpoint)[:16]
    return engine_cache_dir(cache_dir) / f"wav2lip-{digest}-opset{opset}.onnx"


def _atomic_target(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=".part", dir=out.parent)
    os.close(fd)
    return Path(tmp)


def export_model(model: nn.Module, out: str | Path, opset: int = OPSET) -> Path:
    """Write ``model`` (a loaded Wav2Lip generator) as ONNX with a dynamic batch axis, checked by onnx.checker.

    Uses the TorchScript exporter: the network is a plain static graph, and the torch.export-based exporter would
    add a dependency (onnxscript) for no gain. Batch norms after convolutions are folded into them.
    Written to a temporary file and renamed, so concurrent builders never see a half-written model.
    """
    import onnx

    out = Path(out)
    model = model.float().eval().cpu()
    tmp = _atomic_target(out)
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (torch.zeros(1, 1, 80, 16), torch.zeros(1, 6, 96, 96)),
                str(tmp),
                dynamo=False,
                opset_version=opset,
                input_names=list(INPUT_NAMES),
                output_names=[OUTPUT_NAME],
                dynamic_axes={name: {0: BATCH_AXIS} for name in (*INPUT_NAMES, OUTPUT_NAME)},
                do_constant_folding=True,
            )
        onnx.checker.check_model(str(tmp))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("exported Wav2Lip ONNX (opset %d) to %s", opset, out)
    return out


def ensure_onnx(checkpoint: str | Path, cache_dir: str | Path | None = None, opset: int = OPSET) -> Path:
    """The checkpoint's cached ONNX export, exporting it on first use."""
    target = onnx_cache_path(checkpoint, cache_dir, opset)
    if target.is_file():
        return target
    return export_model(load_wav2lip(checkpoint, "cpu"), target, opset)


def resolve_checkpoint(spec: str) -> Path:
    """A checkpoint path, or a model store name such as ``wav2lip`` / ``wav2lip-gan``."""
    path = Path(spec)
    if path.exists():
        return path
    if os.sep in spec or spec.endswith((".pth", ".pt")):
        raise ModelMissingError(f"checkpoint not found: {spec}", "pass a path to wav2lip.pth or a model name")
    from ..models import model_path

    return model_path(spec)
