"""rt-f2f: real-time face-to-face translation."""

__version__ = "0.1.0"
