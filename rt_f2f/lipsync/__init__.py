"""Wav2Lip lip-sync: the generator and its backends, mel features, face tracking, compositing.

Kept import-light on purpose: submodules pull in torch / onnxruntime / cv2, so import the one you need
(``rt_f2f.lipsync.backends``, ``rt_f2f.lipsync.mel``, ...).
"""
