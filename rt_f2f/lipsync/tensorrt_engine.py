"""Build a TensorRT engine for the Wav2Lip generator from its ONNX export (TensorRT 10 Python API).

A serialised engine only runs on the GPU model and TensorRT version that built it, so the cache key carries the
ONNX file's hash, the GPU name and compute capability, the TensorRT version, the precision and the batch profile:
change any of them and a new engine is built instead of a stale one failing at load time. The ``tensorrt``
backend builds on first use through ``ensure_engine``; ``python -m engines.tensorrt_build`` does it ahead of time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from pathlib import Path

from ..errors import BackendUnavailableError, ModelFormatError, RtF2fError
from .checkpoint import file_sha256
from .onnx_export import engine_cache_dir

log = logging.getLogger(__name__)

PRECISIONS = ("fp16", "bf16", "fp32")
INPUT_SHAPES = {"mel": (1, 80, 16), "faces": (6, 96, 96)}  # per-item shapes; the batch axis is dynamic
DEFAULT_BATCH = (1, 8, 32)  # (min, opt, max) of the optimisation profile
DEFAULT_WORKSPACE_GIB = 4


def engine_key(onnx_sha256: str, gpu: str, trt_version: str, precision: str, batch: tuple[int, int, int]) -> str:
    """File name of an engine: readable parts first, then a digest of the full key (GPU names have odd characters)."""
    full = f"{onnx_sha256}|{gpu}|{trt_version}|{precision}|{batch[0]}-{batch[1]}-{batch[2]}"
    digest = hashlib.sha256(full.encode()).hexdigest()[:16]
    gpu_slug = re.sub(r"[^A-Za-z0-9]+", "-", gpu).strip("-").lower()[:40] or "gpu"
    return f"wav2lip-{onnx_sha256[:12]}-{gpu_slug}-trt{trt_version}-{precision}-b{batch[0]}-{batch[2]}-{digest}.engine"


def check_batch(batch: tuple[int, int, int]) -> tuple[int, int, int]:
    lo, opt, hi = (int(b) for b in batch)
    if not 1 <= lo <= opt <= hi:
        raise RtF2fError(f"batch profile must satisfy 1 <= min <= opt <= max, got {batch}")
    return lo, opt, hi


def import_trt():
    try:
        import tensorrt as trt
    except Exception as exc:  # an installed wheel without an NVIDIA driver fails with OSError and friends
        raise BackendUnavailableError(
            f"tensorrt does not import here ({type(exc).__name__}: {exc})",
            "build engines on a machine with an NVIDIA GPU, its driver and `pip install 'rt-f2f[gpu]'`",
        ) from exc
    return trt


def gpu_identity(device: int = 0) -> str:
    """'NAME sm_XY' of a CUDA device: engines are specific to the GPU architecture they were tuned on."""
    import torch

    if not torch.cuda.is_available():
        raise BackendUnavailableError("no CUDA device is visible", "TensorRT engines are built on an NVIDIA GPU")
    major, minor = torch.cuda.get_device_capability(device)
    return f"{torch.cuda.get_device_name(device)} sm_{major}{minor}"


def build_engine(
    onnx_path: str | Path,
    out: str | Path,
    precision: str = "fp16",
    batch: tuple[int, int, int] = DEFAULT_BATCH,
    workspace_gib: float = DEFAULT_WORKSPACE_GIB,
) -> Path:
    """Parse the ONNX export, build a serialised engine with one batch optimisation profile, write it atomically.

    With FP16/BF16 the inputs and outputs stay float32 (TensorRT converts at the edges); only the layers inside
    run at reduced precision, where TensorRT finds that faster.
    """
    if precision not in PRECISIONS:
        raise RtF2fError(f"unknown TensorRT precision {precision!r}", f"use one of {', '.join(PRECISIONS)}")
    lo, opt, hi = check_batch(batch)
    trt = import_trt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelFormatError(f"TensorRT cannot parse {onnx_path}: {errors}", "export the ONNX file again")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "bf16":
        config.set_flag(trt.BuilderFlag.BF16)
    profile = builder.create_optimization_profile()
    for name, shape in INPUT_SHAPES.items():
        profile.set_shape(name, (lo, *shape), (opt, *shape), (hi, *shape))
    config.add_optimization_profile(profile)
    log.info("building TensorRT %s engine (batch %d/%d/%d); this takes a minute or two", precision, lo, opt, hi)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RtF2fError("TensorRT failed to build the Wav2Lip engine", "run with -v to see TensorRT's log")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=".part", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(memoryview(serialized))
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out


def engine_cache_path(
    onnx_path: str | Path,
    cache_dir: str | Path | None = None,
    precision: str = "fp16",
    batch: tuple[int, int, int] = DEFAULT_BATCH,
    device: int = 0,
) -> Path:
    trt = import_trt()
    key = engine_key(file_sha256(onnx_path), gpu_identity(device), trt.__version__, precision, check_batch(batch))
    return engine_cache_dir(cache_dir) / key


def ensure_engine(
    onnx_path: str | Path,
    cache_dir: str | Path | None = None,
    precision: str = "fp16",
    batch: tuple[int, int, int] = DEFAULT_BATCH,
    device: int = 0,
) -> Path:
    """The cached engine for this ONNX file on this GPU, building it first if needed."""
    target = engine_cache_path(onnx_path, cache_dir, precision, batch, device)
    if target.is_file():
        return target
    import torch

    with torch.cuda.device(device):
        return build_engine(onnx_path, target, precision, batch)
