"""Interchangeable engines that run the lip-sync generator: ``tensorrt``, ``torch``, ``torch-bf16``, ``onnxruntime``.

Two generators: Wav2Lip (a ``.pth``, every backend) and LipGAN (its Keras ``.h5``, the torch backends); which one a
checkpoint holds is recognised from the file (:func:`model_of`). LipGAN takes 27 mel steps per frame instead of 16
(``LipSyncBackend.mel_window``); otherwise the arrays below are the same for both.

All take and return the same numpy arrays, so the streaming code never knows which one runs:

- ``mel``: float32 (B, 1, 80, mel_window), windows from :func:`rt_f2f.lipsync.mel.mel_chunks`;
- ``faces``: float32 (B, 6, 96, 96) in [0, 1]; channels 0-2 the target face crop with its lower half (rows 48-95)
  zeroed, channels 3-5 a reference crop of the same face. Both in **BGR** channel order, as the original
  ``inference.py`` fed cv2 frames: a caller holding RGB frames (``VideoFrame.image``) flips them first.
- result: float32 (B, 3, 96, 96) in [0, 1], BGR.

Backend packages are imported only when that backend is loaded, so a CPU-only install never imports CUDA code.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError, MediaError, ModelFormatError, RtF2fError

log = logging.getLogger(__name__)

MEL_SHAPE = (1, 80, 16)
MODELS = ("wav2lip", "lipgan")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
FACE_SHAPE = (6, 96, 96)
OUT_SHAPE = (3, 96, 96)
_RANGE_SLACK = 1e-3  # faces a hair outside [0, 1] from resampling are fine; 0-255 images are not


class LipSyncBackend(ABC):
    """One loaded generator. ``infer`` splits batches larger than ``max_batch`` itself."""

    name: str
    max_batch: int
    model: str = "wav2lip"
    mel_window: int = MEL_SHAPE[2]

    def infer(self, mel: np.ndarray, faces: np.ndarray) -> np.ndarray:
        mel, faces = check_inputs(mel, faces, self.mel_window)
        if len(mel) == 0:
            return np.zeros((0, *OUT_SHAPE), np.float32)
        if len(mel) <= self.max_batch:
            return self._run(mel, faces)
        parts = [
            self._run(mel[i : i + self.max_batch], faces[i : i + self.max_batch])
            for i in range(0, len(mel), self.max_batch)
        ]
        return np.concatenate(parts)

    def warmup(self, batch: int = 1) -> None:
        """Run once so the first real frame does not pay for lazy initialisation (allocations, kernel choice)."""
        mel = np.zeros((batch, 1, MEL_SHAPE[1], self.mel_window), np.float32)
        self.infer(mel, np.zeros((batch, *FACE_SHAPE), np.float32))

    def close(self) -> None:  # noqa: B027 - optional hook; most backends free everything on garbage collection
        """Release device memory early (optional)."""

    @abstractmethod
    def _run(self, mel: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """Checked, C-contiguous float32 inputs with 1 <= B <= max_batch -> float32 (B, 3, 96, 96)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} max_batch={self.max_batch}>"


def check_inputs(mel: np.ndarray, faces: np.ndarray, mel_window: int = MEL_SHAPE[2]) -> tuple[np.ndarray, np.ndarray]:
    """Validate shapes, dtype and range, returning C-contiguous float32 arrays."""
    mel = np.ascontiguousarray(mel, dtype=np.float32)
    faces = np.ascontiguousarray(faces, dtype=np.float32)
    if mel.ndim != 4 or mel.shape[1:] != (1, MEL_SHAPE[1], mel_window):
        raise MediaError(
            f"mel batch must be (B, 1, 80, {mel_window}), got {mel.shape}", "use mel.mel_chunks(...)[:, None]"
        )
    if faces.ndim != 4 or faces.shape[1:] != FACE_SHAPE:
        raise MediaError(
            f"face batch must be (B, 6, 96, 96), got {faces.shape}",
            "stack the masked target crop and the reference crop on the channel axis",
        )
    if len(mel) != len(faces):
        raise MediaError(f"mel batch ({len(mel)}) and face batch ({len(faces)}) differ in size")
    if faces.size:
        lo, hi = float(faces.min()), float(faces.max())
        if not (lo >= -_RANGE_SLACK and hi <= 1 + _RANGE_SLACK):
            raise MediaError(f"face pixels must be in [0, 1], got [{lo:.3g}, {hi:.3g}]", "divide uint8 images by 255")
    if mel.size and not np.isfinite(mel).all():
        raise MediaError("mel batch contains NaN or infinite values")
    return mel, faces


def _check_max_batch(max_batch: int) -> int:
    if int(max_batch) < 1:
        raise RtF2fError(f"max_batch must be at least 1, got {max_batch}")
    return int(max_batch)


# --------------------------------------------------------------------------------------------------- torch


def model_of(checkpoint: str | Path | None) -> str:
    """Which generator a checkpoint holds: "lipgan" for a Keras HDF5 file, else "wav2lip" (loading checks further)."""
    if checkpoint is None:
        return "wav2lip"
    try:
        with open(checkpoint, "rb") as fh:
            return "lipgan" if fh.read(len(_HDF5_MAGIC)) == _HDF5_MAGIC else "wav2lip"
    except OSError:
        return "lipgan" if str(checkpoint).lower().endswith((".h5", ".hdf5")) else "wav2lip"


class TorchBackend(LipSyncBackend):
    """PyTorch eager (optionally compiled). On CUDA it runs fp16 by default; on CPU fp32 (or bf16 if asked).

    Runs either generator (``model``: "wav2lip", "lipgan", or None to recognise it from the checkpoint).
    """

    def __init__(
        self,
        checkpoint: str | Path,
        device: str = "auto",
        precision: str | None = None,
        channels_last: bool = False,
        compile: bool = False,
        max_batch: int = 32,
        threads: int | None = None,
        model: str | None = None,
    ) -> None:
        import torch

        from .checkpoint import load_wav2lip

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailableError(
                "torch has no CUDA device here", "use device='cpu', or install a CUDA build of torch on a GPU machine"
            )
        precision = precision or ("fp16" if device.startswith("cuda") else "fp32")
        dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
        if precision not in dtypes:
            raise RtF2fError(f"unknown torch precision {precision!r}", f"use one of {', '.join(dtypes)}")
        if precision == "fp16" and not device.startswith("cuda"):
            raise RtF2fError("fp16 is only offered on CUDA", "use precision='fp32' or 'bf16' on the CPU")
        if threads:
            torch.set_num_threads(threads)  # process-wide: only when the caller asks
        self._torch = torch
        self.device = torch.device(device)
        self.dtype = dtypes[precision]
        self.precision = precision
        self.max_batch = _check_max_batch(max_batch)
        self.name = "torch" if precision == "fp32" else f"torch-{precision}"
        self._memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model or model_of(checkpoint)
        if self.model == "lipgan":
            from .lipgan import LIPGAN_MEL_STEPS, WithWav2LipInputs
            from .lipgan_h5 import load_lipgan_network

            net = WithWav2LipInputs(load_lipgan_network(checkpoint, "lipgan", self.device))
            self.mel_window = LIPGAN_MEL_STEPS
            self.name = f"lipgan-{self.name}"
        else:
            net = load_wav2lip(checkpoint, self.device)
        net = net.to(dtype=self.dtype, memory_format=self._memory_format)
        self.net = torch.compile(net, dynamic=True) if compile else net

    def _run(self, mel: np.ndarray, faces: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            m = torch.from_numpy(mel).to(self.device, self.dtype)
            f = torch.from_numpy(faces).to(self.device, self.dtype).contiguous(memory_format=self._memory_format)
            out = self.net(m, f)
            return out.float().cpu().numpy()


# --------------------------------------------------------------------------------------------- onnxruntime


class OnnxRuntimeBackend(LipSyncBackend):
    """ONNX Runtime with full graph optimisation. Exports the checkpoint on first use into the engine cache."""

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        onnx_path: str | Path | None = None,
        cache_dir: str | Path | None = None,
        threads: int | None = None,
        providers: list[str] | None = None,
        max_batch: int = 32,
    ) -> None:
        import onnxruntime as ort

        if onnx_path is None:
            if checkpoint is None:
                raise RtF2fError("the onnxruntime backend needs a checkpoint or an .onnx file")
            from .onnx_export import ensure_onnx

            onnx_path = ensure_onnx(checkpoint, cache_dir)
        onnx_path = Path(onnx_path)
        if not onnx_path.is_file():
            raise RtF2fError(f"ONNX model not found: {onnx_path}", "export one with `python -m engines.export_onnx`")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.intra_op_num_threads = threads or _default_threads()
        opts.inter_op_num_threads = 1
        # no busy-waiting between ops: in the pipeline the cores are shared with ASR and TTS, which spinning starves
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        available = ort.get_available_providers()
        providers = providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        try:
            self.session = ort.InferenceSession(str(onnx_path), opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
            raise ModelFormatError(f"ONNX Runtime cannot load {onnx_path}: {exc}", "export it again") from exc
        names = [i.name for i in self.session.get_inputs()]
        if names != ["mel", "faces"]:
            raise ModelFormatError(
                f"{onnx_path} has inputs {names}, expected ['mel', 'faces']", "export it with engines.export_onnx"
            )
        self.onnx_path = onnx_path
        self.max_batch = _check_max_batch(max_batch)
        self.name = "onnxruntime"
        self.providers = self.session.get_providers()

    def _run(self, mel: np.ndarray, faces: np.ndarray) -> np.ndarray:
        (out,) = self.session.run(None, {"mel": mel, "faces": faces})
        return np.asarray(out, dtype=np.float32)


def _default_threads() -> int:
    """All cores this process may use: the generator is the heaviest stage, and ORT's default spins extra threads."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


# ----------------------------------------------------------------------------------------------- tensorrt


class TensorRTBackend(LipSyncBackend):
    """A TensorRT engine (FP16 by default) built from the ONNX export on first use and cached per GPU."""

    def __init__(
        self,
        checkpoint: str | Path,
        cache_dir: str | Path | None = None,
        precision: str = "fp16",
        min_batch: int = 1,
        opt_batch: int = 8,
        max_batch: int = 32,
        device: int = 0,
    ) -> None:
        _require_tensorrt()
        from .onnx_export import ensure_onnx
        from .tensorrt_engine import ensure_engine
        from .trt_runtime import TrtRunner

        onnx_path = ensure_onnx(checkpoint, cache_dir)
        engine_path = ensure_engine(
            onnx_path, cache_dir=cache_dir, precision=precision, batch=(min_batch, opt_batch, max_batch), device=device
        )
        self.runner = TrtRunner(engine_path, device=device)
        self.max_batch = min(_check_max_batch(max_batch), self.runner.max_batch)
        self.name = "tensorrt" if precision == "fp16" else f"tensorrt-{precision}"
        self.engine_path = engine_path

    def _run(self, mel: np.ndarray, faces: np.ndarray) -> np.ndarray:
        return self.runner.infer(mel, faces)

    def close(self) -> None:
        self.runner.close()


def _require_tensorrt() -> None:
    """Raise BackendUnavailableError unless tensorrt imports and a CUDA device is visible."""
    reason = _tensorrt_missing()
    if reason:
        raise BackendUnavailableError(
            f"the tensorrt lip-sync backend is unavailable here: {reason}",
            "install the gpu extra (pip install 'rt-f2f[gpu]') on a machine with an NVIDIA GPU and driver, "
            "or choose the onnxruntime or torch backend",
        )


_TRT_PROBE: list[str] = []  # cached probe result: importing tensorrt without a driver is slow and fails the same way


def _tensorrt_missing() -> str:
    if _TRT_PROBE:
        return _TRT_PROBE[0]
    reason = ""
    if importlib.util.find_spec("tensorrt") is None:
        reason = "the tensorrt package is not installed"
    else:
        try:
            importlib.import_module("tensorrt")
        except Exception as exc:  # a wheel without a driver fails with assorted OSErrors / ImportErrors
            reason = f"tensorrt does not import ({type(exc).__name__}: {exc})"
        else:
            import torch

            if not torch.cuda.is_available():
                reason = "no CUDA device is visible to torch (needed for device buffers)"
    _TRT_PROBE.append(reason)
    return reason


# ------------------------------------------------------------------------------------------------ registry


@dataclass(frozen=True)
class _Entry:
    factory: Callable[..., LipSyncBackend]
    available: Callable[[], bool]
    description: str


def _importable(*modules: str) -> Callable[[], bool]:
    return lambda: all(importlib.util.find_spec(m) is not None for m in modules)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 dot products in hardware (AVX512-BF16 or AMX); elsewhere bf16 is emulated."""
    import torch

    cpu = getattr(torch, "cpu", None)
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return torch.backends.mkldnn.is_available() and any(getattr(cpu, p, lambda: False)() for p in probes)


def _torch_bf16(checkpoint: str | Path, **opts: Any) -> TorchBackend:
    """bf16 weights and activations, channels-last, on the CPU.

    Measured here (AMD EPYC, AVX512-BF16): about 2x the fp32 throughput per core, max abs error ~0.02 on a [0, 1]
    output (mean ~0.002) against fp32 with random weights. Dynamic int8 ONNX quantisation was slower than fp32
    and static int8 needs calibration data, so bf16 is the CPU fast path.
    """
    opts.setdefault("device", "cpu")
    opts.setdefault("channels_last", True)
    return TorchBackend(checkpoint, precision="bf16", **opts)


BACKENDS: dict[str, _Entry] = {
    "tensorrt": _Entry(TensorRTBackend, lambda: not _tensorrt_missing(), "TensorRT FP16 engine (NVIDIA GPU)"),
    "torch": _Entry(TorchBackend, _importable("torch"), "PyTorch: CUDA fp16 when a GPU is present, else CPU fp32"),
    "torch-bf16": _Entry(
        _torch_bf16,
        lambda: _importable("torch")() and cpu_has_native_bf16(),
        "PyTorch bf16 on a CPU with native bf16 (fastest CPU path; small precision loss)",
    ),
    "onnxruntime": _Entry(OnnxRuntimeBackend, _importable("onnxruntime", "onnx"), "ONNX Runtime fp32"),
}


def available_backends() -> list[str]:
    """Backends that can run here (packages import; GPU / native bf16 present where needed), best first.

    Order: tensorrt; torch when CUDA is present (fp16); torch-bf16; onnxruntime; torch on the CPU (fp32).
    """
    names = [name for name, entry in BACKENDS.items() if entry.available()]
    cuda = "torch" in names and importlib.import_module("torch").cuda.is_available()
    rank = {"tensorrt": 0, "torch": 1 if cuda else 4, "torch-bf16": 2, "onnxruntime": 3}
    return sorted(names, key=lambda n: rank.get(n, 5))


def default_backend(checkpoint: str | Path | None = None) -> str:
    """The backend expected to be fastest here for ``checkpoint``'s generator (the first of ``available_backends()``
    that runs it: LipGAN runs on the torch backends only)."""
    names = available_backends()
    if model_of(checkpoint) == "lipgan":
        names = [n for n in names if n in LIPGAN_BACKENDS]
    if not names:
        raise BackendUnavailableError("no lip-sync backend can run here", "install torch or onnxruntime")
    return names[0]


LIPGAN_BACKENDS = ("torch", "torch-bf16")


def load_backend(name: str, checkpoint: str | Path | None, model: str | None = None, **opts: Any) -> LipSyncBackend:
    """Load the generator from ``checkpoint`` into backend ``name`` (see ``available_backends()``).

    ``model`` is "wav2lip" or "lipgan" (None: recognised from the checkpoint). ``opts`` go to the backend: e.g. ``threads``, ``max_batch``, ``cache_dir`` (ONNX/TensorRT engine cache),
    ``onnx_path`` (onnxruntime: use this export), ``device`` / ``precision`` / ``channels_last`` / ``compile`` (torch).
    """
    entry = BACKENDS.get(name)
    if entry is None:
        raise BackendUnavailableError(
            f"unknown lip-sync backend {name!r}", f"choose one of: {', '.join(available_backends())}"
        )
    model = model or model_of(checkpoint)
    if model not in MODELS:
        raise RtF2fError(f"unknown lip-sync model {model!r}", f"choose one of: {', '.join(MODELS)}")
    if model != model_of(checkpoint) and checkpoint is not None and Path(checkpoint).is_file():
        raise ModelFormatError(
            f"{checkpoint} holds the {model_of(checkpoint)} generator, not {model}",
            f"pass --model {model_of(checkpoint)}, or a {model} checkpoint",
        )
    if model == "lipgan":
        if name not in LIPGAN_BACKENDS:
            raise BackendUnavailableError(
                f"the {name} lip-sync backend runs Wav2Lip only", f"run LipGAN on one of: {', '.join(LIPGAN_BACKENDS)}"
            )
        opts["model"] = model
    if name == "tensorrt":
        _require_tensorrt()
    elif not entry.available():
        raise BackendUnavailableError(
            f"the {name} lip-sync backend's packages are not installed",
            f"install them, or choose one of: {', '.join(available_backends())}",
        )
    try:
        backend = entry.factory(checkpoint, **opts)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise RtF2fError(f"backend {name!r} does not take that option: {exc}") from exc
        raise
    log.info("lip-sync backend %s ready (max batch %d)", backend.name, backend.max_batch)
    return backend
