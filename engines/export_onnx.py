"""``python -m engines.export_onnx CHECKPOINT``: export the Wav2Lip generator to ONNX ahead of time.

The command only; the export itself is ``rt_f2f.lipsync.onnx_export`` (the backends export on first use through
the same code, so an ahead-of-time export and a first-use one are the same file in the same cache).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rt_f2f.errors import RtF2fError
from rt_f2f.lipsync.checkpoint import load_wav2lip
from rt_f2f.lipsync.onnx_export import OPSET, ensure_onnx, export_model, resolve_checkpoint


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="export-onnx", description="Export the Wav2Lip generator to ONNX.")
    parser.add_argument("checkpoint", help="wav2lip .pth file, or a model name (wav2lip, wav2lip-gan)")
    parser.add_argument("-o", "--out", type=Path, help="output .onnx (default: the engine cache)")
    parser.add_argument("--opset", type=int, default=OPSET, help="ONNX opset (>= 17)")
    parser.add_argument("--cache-dir", type=Path, help="engine cache folder (default $RT_F2F_HOME/engines)")
    args = parser.parse_args(argv)
    if args.opset < 17:
        parser.error("opset must be 17 or newer")
    try:
        checkpoint = resolve_checkpoint(args.checkpoint)
        if args.out is None:
            path = ensure_onnx(checkpoint, args.cache_dir, args.opset)
        else:
            path = export_model(load_wav2lip(checkpoint), args.out, opset=args.opset)
        print(path)
    except RtF2fError as exc:
        print(f"export-onnx: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
