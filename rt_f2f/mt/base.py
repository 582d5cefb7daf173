"""The one interface every machine-translation backend offers.

A translator is built for one (source, target) pair, so a stage never passes language codes per call and a
multilingual model (NLLB, M2M100) looks exactly like a bilingual one (OPUS-MT, the embedded en<->pt model).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

# Clauses come from a segmenter that caps their length, so anything far longer is not speech: cut it rather than
# let one bad input hold the translator (and every clause behind it) for seconds.
MAX_CHARS = 2000


@dataclass(frozen=True)
class TranslationContext:
    """The previous clause and its translation, which a backend may condition the next clause on."""

    source: str
    target: str


class Translator(ABC):
    """Translate batches of plain-text segments from ``source`` to ``target`` (ISO 639-1 codes)."""

    source: str
    target: str
    #: Short description for logs and reports: backend and model.
    description: str = ""
    #: Whether ``translate_next`` actually uses the context (otherwise it is ignored).
    supports_context: bool = False

    @abstractmethod
    def translate(self, texts: list[str]) -> list[str]:
        """One translation per input, in order; blank inputs give ``""`` without calling the model."""

    def translate_next(self, text: str, context: TranslationContext | None = None) -> str:
        """Translate one clause that continues ``context``; backends without context support ignore it."""
        return self.translate([text])[0]

    def warm_up(self) -> None:  # noqa: B027 - an optional hook, not an abstract method
        """Pay any lazy loading now, before the first clause; models loaded in ``__init__`` have none."""

    def close(self) -> None:  # noqa: B027 - an optional hook, not an abstract method
        """Release the model; the default holds nothing that needs closing."""

    def __enter__(self) -> Translator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source}->{self.target}, {self.description})"


def bound_text(text: str, max_chars: int = MAX_CHARS) -> str:
    """Trim whitespace and cut over-long input at the last space before ``max_chars``."""
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return text
    cut = text.rfind(" ", 0, max_chars)
    return text[: cut if cut > 0 else max_chars]
