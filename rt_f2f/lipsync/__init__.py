"""Wav2Lip lip-sync: the generator and its backends, mel features, face tracking, compositing.

Kept import-light on purpose: submodules pull in torch / onnxruntime / cv2, so import the one you need
(``rt_f2f.lipsync.backends``, ``rt_f2f.lipsync.mel``, ...).

One process-wide setting is made here, before torch can load OpenMP: idle OpenMP threads sleep instead of
spinning. On cores shared with ASR and TTS, spinning torch threads wait on each other at every layer; measured
here (2 shared cores, torch bf16, 2 threads) it cut the generator from ~20 to ~4 frames/s. It only takes effect
if torch has not been imported yet, and a value the user set wins.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
