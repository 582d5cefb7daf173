"""Building accelerated Wav2Lip engines: ONNX export (any machine) and TensorRT (NVIDIA GPUs).

Each builder writes into a cache keyed by what the engine depends on, so a backend can build on first use and
reuse afterwards; each also has a ``main(argv)`` for ahead-of-time builds from the command line.
"""
