"""Training Wav2Lip's networks on your own footage: the dataset layout, ``rt-f2f preprocess`` and ``rt-f2f train``."""
