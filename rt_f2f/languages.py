"""The languages rt-f2f knows, by ISO 639-1 code.

One plain table that every stage checks user input against, so a typo (``--target pt-br``, ``--target portugese``)
fails once, up front, with the list of codes, instead of deep inside a model. Knowing a code does not mean every
stage supports it: each stage says which pairs or voices it has (the MT stage lists its pairs, for example).
The set is the languages that Whisper transcribes well enough and that the NLLB / M2M100 / OPUS-MT translators and
the Kokoro / Piper / MMS / espeak-ng voices cover in some form, including the six of the paper rt-f2f grows out of
("Towards Automatic Face-to-Face Translation": Hindi, English, Telugu, Malayalam, Tamil, Urdu).
"""

from __future__ import annotations

from .errors import LanguageError

LANGUAGES: dict[str, str] = {
    "ar": "Arabic",
    "ca": "Catalan",
    "cs": "Czech",
    "da": "Danish",
    "de": "German",
    "el": "Greek",
    "en": "English",
    "es": "Spanish",
    "fi": "Finnish",
    "fr": "French",
    "he": "Hebrew",
    "hi": "Hindi",
    "hu": "Hungarian",
    "id": "Indonesian",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "ml": "Malayalam",
    "nl": "Dutch",
    "no": "Norwegian",
    "pl": "Polish",
    "pt": "Portuguese",
    "ro": "Romanian",
    "ru": "Russian",
    "sv": "Swedish",
    "ta": "Tamil",
    "te": "Telugu",
    "th": "Thai",
    "tr": "Turkish",
    "uk": "Ukrainian",
    "ur": "Urdu",
    "vi": "Vietnamese",
    "zh": "Chinese",
}


# The Unicode script each language is written in (as in its NLLB-200 code, e.g. hin_Deva): what a translation or
# transcript into that language must be written in. Urdu is written in the Arabic script.
SCRIPTS: dict[str, str] = {
    **dict.fromkeys(("ca", "cs", "da", "de", "en", "es", "fi", "fr", "hu", "id", "it", "nl", "no", "pl"), "Latin"),
    **dict.fromkeys(("pt", "ro", "sv", "tr", "vi"), "Latin"),
    **dict.fromkeys(("ar", "ur"), "Arabic"),
    **dict.fromkeys(("ru", "uk"), "Cyrillic"),
    "el": "Greek",
    "he": "Hebrew",
    "hi": "Devanagari",
    "ja": "Japanese",
    "ko": "Hangul",
    "ml": "Malayalam",
    "ta": "Tamil",
    "te": "Telugu",
    "th": "Thai",
    "zh": "Han",
}


def validate(code: str) -> str:
    """Return the canonical code for ``code`` or raise ``LanguageError`` listing the valid ones.

    Case and a region subtag are forgiven (``PT``, ``pt-BR``, ``pt_BR`` -> ``pt``) because people copy locale names
    from elsewhere; anything else must be an exact code, since guessing a language silently is worse than asking.
    """
    if not isinstance(code, str):
        raise LanguageError(f"language code must be a string, got {type(code).__name__}", _hint())
    canonical = code.strip().replace("_", "-").split("-")[0].lower()
    if canonical not in LANGUAGES:
        raise LanguageError(f"unknown language code '{code}'; known codes: {', '.join(LANGUAGES)}", _hint())
    return canonical


def name(code: str) -> str:
    """The English name of a language code (validated)."""
    return LANGUAGES[validate(code)]


def _hint() -> str:
    return "use a two-letter ISO 639-1 code, for example en, pt, es, de, fr"
