"""The lip-sync backends' names, for every command's ``--backend`` choices, without importing any backend.

``rt_f2f.lipsync.backends.BACKENDS`` holds the backends themselves under these names (a test keeps the two equal);
which of them can run on this machine is ``backends.available_backends()``. Every command that takes a backend
adds its flag through ``add_backend_argument``, so the choices and their help read the same everywhere.
"""

from __future__ import annotations

import argparse

BACKEND_NAMES = ("tensorrt", "torch", "torch-bf16", "onnxruntime")


def add_backend_argument(parser: argparse.ArgumentParser, flag: str = "--backend") -> argparse.Action:
    """``flag`` with ``BACKEND_NAMES`` as its choices (argparse lists them in the help); default None: the best here."""
    return parser.add_argument(
        flag,
        choices=BACKEND_NAMES,
        default=None,
        help="lip-sync backend: tensorrt (NVIDIA GPU), torch (fp16 on a GPU, fp32 on a CPU), torch-bf16 (CPU; fast "
        "where it has native bf16), onnxruntime (default: the fastest available here)",
    )
