"""``python -m engines.tensorrt_build MODEL``: build a TensorRT engine for the Wav2Lip generator ahead of time.

The command only; the build itself is ``rt_f2f.lipsync.tensorrt_engine`` (the ``tensorrt`` backend builds on first
use through the same code and cache).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rt_f2f.errors import RtF2fError
from rt_f2f.lipsync.onnx_export import ensure_onnx, resolve_checkpoint
from rt_f2f.lipsync.tensorrt_engine import (
    DEFAULT_BATCH,
    DEFAULT_WORKSPACE_GIB,
    PRECISIONS,
    build_engine,
    ensure_engine,
    gpu_identity,
    import_trt,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tensorrt-build", description="Build a TensorRT engine for Wav2Lip.")
    parser.add_argument("model", help="wav2lip .pth checkpoint, its .onnx export, or a model name (wav2lip)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp16")
    parser.add_argument("--min-batch", type=int, default=DEFAULT_BATCH[0])
    parser.add_argument("--opt-batch", type=int, default=DEFAULT_BATCH[1])
    parser.add_argument("--max-batch", type=int, default=DEFAULT_BATCH[2])
    parser.add_argument("--workspace-gib", type=float, default=DEFAULT_WORKSPACE_GIB)
    parser.add_argument("--device", type=int, default=0, help="CUDA device index")
    parser.add_argument("-o", "--out", type=Path, help="engine file (default: the engine cache)")
    parser.add_argument("--cache-dir", type=Path, help="engine cache folder (default $RT_F2F_HOME/engines)")
    args = parser.parse_args(argv)
    batch = (args.min_batch, args.opt_batch, args.max_batch)
    try:
        import_trt()
        gpu_identity(args.device)
        onnx_path = Path(args.model)
        if onnx_path.suffix != ".onnx":
            onnx_path = ensure_onnx(resolve_checkpoint(args.model), args.cache_dir)
        if args.out:
            import torch

            with torch.cuda.device(args.device):
                path = build_engine(onnx_path, args.out, args.precision, batch, args.workspace_gib)
        else:
            path = ensure_engine(onnx_path, args.cache_dir, args.precision, batch, args.device)
    except RtF2fError as exc:
        print(f"tensorrt-build: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
