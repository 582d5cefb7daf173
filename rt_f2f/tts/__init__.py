"""Streaming text-to-speech: one interface (``Synthesizer``), three backends (Piper, Kokoro, espeak-ng), the
automatic choice of voice per language (``get_synthesizer``) and the pipeline stage (``TTSStage``).

Importing this package loads no model: backends import their libraries when a voice is first built.
"""

from .base import Synthesizer, split_phrases
from .select import BACKENDS, TTSStage, TTSStats, candidates, get_synthesizer

__all__ = ["BACKENDS", "Synthesizer", "TTSStage", "TTSStats", "candidates", "get_synthesizer", "split_phrases"]
