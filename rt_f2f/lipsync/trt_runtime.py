"""Run a serialised Wav2Lip TensorRT engine with torch CUDA tensors as device buffers.

torch (already a dependency) provides device memory, streams and host<->device copies, so pycuda is not needed.
Buffers are allocated once at the engine's maximum batch and sliced per call; inputs are copied through pinned
host memory so the copy can overlap with other work on the stream.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ModelFormatError, RtF2fError
from .tensorrt_engine import INPUT_SHAPES, import_trt

OUTPUT_SHAPE = (3, 96, 96)


class TrtRunner:
    """One engine + execution context + stream on one GPU; not thread-safe (one caller at a time)."""

    def __init__(self, engine_path: str | Path, device: int = 0) -> None:
        import torch

        trt = import_trt()
        self._torch = torch
        self.device = torch.device("cuda", device)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        engine = self._runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if engine is None:
            raise ModelFormatError(
                f"TensorRT cannot load {engine_path}",
                "it was built by another TensorRT version or GPU: delete it and let it be rebuilt",
            )
        self.engine = engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = {n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT}
        outputs = [n for n in names if n not in inputs]
        if inputs != set(INPUT_SHAPES) or len(outputs) != 1:
            raise ModelFormatError(f"{engine_path} has tensors {names}, expected mel, faces and one output")
        self.output_name = outputs[0]
        for name in names:
            if engine.get_tensor_dtype(name) != trt.DataType.FLOAT:
                raise ModelFormatError(f"{engine_path}: tensor {name} is not float32", "rebuild the engine")
        _, _, max_shape = engine.get_tensor_profile_shape("faces", 0)
        self.max_batch = int(max_shape[0])
        self.context = engine.create_execution_context()
        with torch.cuda.device(self.device):
            self.stream = torch.cuda.Stream(self.device)
            self._dev = {
                name: torch.empty((self.max_batch, *shape), dtype=torch.float32, device=self.device)
                for name, shape in INPUT_SHAPES.items()
            }
            self._dev[self.output_name] = torch.empty(
                (self.max_batch, *OUTPUT_SHAPE), dtype=torch.float32, device=self.device
            )
            self._host_out = torch.empty((self.max_batch, *OUTPUT_SHAPE), dtype=torch.float32, pin_memory=True)
            self._host_in = {
                name: torch.empty((self.max_batch, *shape), dtype=torch.float32, pin_memory=True)
                for name, shape in INPUT_SHAPES.items()
            }

    def infer(self, mel: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """float32 (B,1,80,16), (B,6,96,96) with B <= max_batch -> float32 (B,3,96,96) on the host."""
        torch = self._torch
        batch = len(mel)
        if not 1 <= batch <= self.max_batch:
            raise RtF2fError(f"batch {batch} is outside this engine's profile (1..{self.max_batch})")
        host = {"mel": mel, "faces": faces}
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            for name in INPUT_SHAPES:
                staged = self._host_in[name][:batch]
                staged.numpy()[...] = host[name]
                dev = self._dev[name][:batch]
                dev.copy_(staged, non_blocking=True)
                self.context.set_input_shape(name, tuple(dev.shape))
                self.context.set_tensor_address(name, dev.data_ptr())
            out = self._dev[self.output_name][:batch]
            self.context.set_tensor_address(self.output_name, out.data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RtF2fError("TensorRT execution failed", "run with -v to see TensorRT's log")
            host_out = self._host_out[:batch]
            host_out.copy_(out, non_blocking=True)
            self.stream.synchronize()
        return host_out.numpy().copy()

    def close(self) -> None:
        """Drop the context and buffers now rather than at garbage collection (frees GPU memory for a rebuild)."""
        self.context = None
        self.engine = None
        self._dev = {}
