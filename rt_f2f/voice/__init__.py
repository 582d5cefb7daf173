"""The speaker's voice: who they are (embedding), how they sound (profile, enrolled live) and making the
synthetic voice sound like them (conversion, and the pipeline stage that does it).

Importing this package loads no model; the embedder loads on first use.
"""

from .convert import ConversionSettings, Converter, OnnxVoiceConverter, VCEvent, VCStage, VoiceConverter
from .embedding import Embedder, SpeakerEmbedder, cosine, embed, get_embedder, similarity
from .profile import SpeakerProfile, VoiceStats

__all__ = [
    "ConversionSettings",
    "Converter",
    "Embedder",
    "OnnxVoiceConverter",
    "SpeakerEmbedder",
    "SpeakerProfile",
    "VCEvent",
    "VCStage",
    "VoiceConverter",
    "VoiceStats",
    "cosine",
    "embed",
    "get_embedder",
    "similarity",
]
