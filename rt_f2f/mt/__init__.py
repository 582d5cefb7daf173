"""Machine translation: one ``Translator`` interface, CTranslate2 and embedded backends, and the MT stage."""

from .base import TranslationContext, Translator
from .ct2 import CT2Options, CT2Translator, Family, inspect_folder
from .select import PairOffer, available_pairs, get_translator
from .stage import MTStage

__all__ = [
    "CT2Options",
    "CT2Translator",
    "Family",
    "MTStage",
    "PairOffer",
    "TranslationContext",
    "Translator",
    "available_pairs",
    "get_translator",
    "inspect_folder",
]
