"""The lip-sync backends' names, for every command's ``--backend`` choices, without importing any backend.

``rt_f2f.lipsync.backends.BACKENDS`` holds the backends themselves under these names (a test keeps the two equal);
which of them can run on this machine is ``backends.available_backends()``.
"""

BACKEND_NAMES = ("tensorrt", "torch", "torch-bf16", "onnxruntime")
