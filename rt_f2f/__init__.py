"""rt-f2f: real-time face-to-face translation."""

import os

# Under CPU contention (ASR, TTS and lip-sync share the cores) OpenMP's spinning workers starve each other: torch's
# generator fell from ~20 to ~5 frames/s; passive waiting restores it. Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
