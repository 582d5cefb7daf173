"""CTranslate2 translators over OPUS-MT, NLLB and M2M100 folders.

These are the models a user pulls on a machine with internet (OPUS-MT pairs, or one multilingual NLLB / M2M100
model for every pair), converted to CTranslate2: ``model.bin`` and ``config.json`` from the converter, a vocabulary
(``shared_vocabulary.json|txt``, or separate source/target ones), and the SentencePiece models the converter copies
beside them. The three families differ only in tokenisation, which is why one class serves them all:

- OPUS-MT (Marian): ``source.spm`` / ``target.spm``; the source ends with ``</s>``; multi-target models want a
  ``>>xx<<`` token first.
- NLLB: ``sentencepiece.bpe.model``; source ``[eng_Latn, ..., </s>]``, target prefix ``[por_Latn]``.
- M2M100: ``sentencepiece.bpe.model``; source ``[__en__, ..., </s>]``, target prefix ``[__pt__]``.

The family is read from the files and the vocabulary rather than a name, so any conversion that follows the
usual layout loads.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from ..errors import LanguageError, ModelFormatError, ModelMissingError
from .base import TranslationContext, Translator, bound_text

# ISO 639-1 -> NLLB-200 (FLORES-200) codes for the languages in rt_f2f.languages.
NLLB_CODES: dict[str, str] = {
    "ar": "arb_Arab",
    "ca": "cat_Latn",
    "cs": "ces_Latn",
    "da": "dan_Latn",
    "de": "deu_Latn",
    "el": "ell_Grek",
    "en": "eng_Latn",
    "es": "spa_Latn",
    "fi": "fin_Latn",
    "fr": "fra_Latn",
    "he": "heb_Hebr",
    "hi": "hin_Deva",
    "hu": "hun_Latn",
    "id": "ind_Latn",
    "it": "ita_Latn",
    "ja": "jpn_Jpan",
    "ko": "kor_Hang",
    "ml": "mal_Mlym",
    "nl": "nld_Latn",
    "no": "nob_Latn",
    "pl": "pol_Latn",
    "pt": "por_Latn",
    "ro": "ron_Latn",
    "ru": "rus_Cyrl",
    "sv": "swe_Latn",
    "ta": "tam_Taml",
    "te": "tel_Telu",
    "th": "tha_Thai",
    "tr": "tur_Latn",
    "uk": "ukr_Cyrl",
    "ur": "urd_Arab",
    "vi": "vie_Latn",
    "zh": "zho_Hans",
}

_NLLB_TOKEN = re.compile(r"^[a-z]{3}_[A-Z][a-z]{3}$")
_M2M_TOKEN = re.compile(r"^__[a-z]{2,3}__$")
_MARIAN_TARGET_TOKEN = re.compile(r"^>>[a-z_]{2,8}<<$")
# Previous-clause context is only worth its cost while it is short; longer context is dropped, not cut mid-word.
MAX_CONTEXT_TOKENS = 64


class Family(StrEnum):
    OPUS_MT = "opus-mt"
    NLLB = "nllb"
    M2M100 = "m2m100"


@dataclass(frozen=True)
class CT2Options:
    """Decoding and threading settings.

    Defaults favour latency for clause-sized inputs: a beam of 2 keeps most of beam search's gain over greedy at
    little cost. One intra-op thread, because on CPU the MT stage shares the cores with ASR and TTS: on a loaded
    2-core machine a second OpenMP thread made the tiny test model's clause 15-20x slower (threads spinning for a core),
    while a ten-token clause has little parallel work to give it. ``inter_threads`` is always 1: the stage sends
    one batch at a time.
    """

    device: str = "auto"  # cpu | cuda | auto
    compute_type: str = "auto"  # CTranslate2 picks the fastest type the device supports (int8 on most CPUs)
    intra_threads: int = 1
    beam_size: int = 2
    max_input_length: int = 256  # source tokens kept per segment (OPUS-MT positions stop at 512)
    max_decoding_length: int = 256  # hard cap on output tokens per segment
    max_batch_size: int = 32


@dataclass(frozen=True)
class FolderLayout:
    """What a model folder holds, found by ``inspect_folder``."""

    path: Path
    family: Family
    config: dict[str, Any]
    source_vocabulary: tuple[str, ...]
    target_vocabulary: tuple[str, ...]
    source_spm: Path
    target_spm: Path


def _read_vocabulary(path: Path) -> tuple[str, ...]:
    try:
        if path.suffix == ".json":
            tokens = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
                raise ValueError("expected a JSON list of strings")
            return tuple(tokens)
        return tuple(line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelFormatError(
            f"unreadable vocabulary {path}: {exc}", "convert the model again with ct2-transformers-converter"
        ) from exc


def _find_vocabulary(folder: Path, stem: str) -> Path | None:
    for suffix in (".json", ".txt"):
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def inspect_folder(folder: str | Path) -> FolderLayout:
    """Check a CTranslate2 translation folder and work out its family, naming whatever is missing."""
    path = Path(folder)
    if not path.exists():
        raise ModelMissingError(
            f"MT model folder {path} does not exist",
            "pull one with `rt-f2f models pull opus-mt-en-de` (for example), or pass the folder of a "
            "CTranslate2 conversion (model.bin, config.json, vocabulary, SentencePiece models)",
        )
    if not path.is_dir():
        raise ModelFormatError(
            f"MT model {path} is a file, not a CTranslate2 model folder",
            "pass the folder that holds model.bin, config.json, the vocabulary and the SentencePiece models",
        )
    missing = [name for name in ("model.bin", "config.json") if not (path / name).is_file()]
    shared = _find_vocabulary(path, "shared_vocabulary")
    source_vocab = _find_vocabulary(path, "source_vocabulary")
    target_vocab = _find_vocabulary(path, "target_vocabulary")
    if shared is None and (source_vocab is None or target_vocab is None):
        missing.append("shared_vocabulary.json|txt (or source_vocabulary + target_vocabulary)")
    if (path / "source.spm").is_file() and (path / "target.spm").is_file():
        family = Family.OPUS_MT
        source_spm, target_spm = path / "source.spm", path / "target.spm"
    elif (path / "sentencepiece.bpe.model").is_file():
        family = None  # NLLB or M2M100: decided by the vocabulary's language tokens below
        source_spm = target_spm = path / "sentencepiece.bpe.model"
    else:
        family = None
        source_spm = target_spm = path
        missing.append(
            "SentencePiece models (source.spm + target.spm for OPUS-MT, sentencepiece.bpe.model for NLLB/M2M100)"
        )
    if missing:
        raise ModelFormatError(
            f"MT model folder {path} lacks: {'; '.join(missing)}",
            "copy the missing files from the model's repository (converters copy the SentencePiece models only "
            "when asked: ct2-transformers-converter --copy_files source.spm target.spm)",
        )
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            raise ValueError("expected a JSON object")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelFormatError(f"unreadable {path / 'config.json'}: {exc}", "convert the model again") from exc
    if shared is not None:
        source_tokens = target_tokens = _read_vocabulary(shared)
    else:
        source_tokens, target_tokens = _read_vocabulary(source_vocab), _read_vocabulary(target_vocab)
    if not target_tokens:
        raise ModelFormatError(f"the vocabulary in {path} is empty", "convert the model again")
    if family is None:
        if any(_NLLB_TOKEN.match(t) for t in target_tokens):
            family = Family.NLLB
        elif any(_M2M_TOKEN.match(t) for t in target_tokens):
            family = Family.M2M100
        else:
            raise ModelFormatError(
                f"{path} has sentencepiece.bpe.model but its vocabulary has no language tokens "
                "(eng_Latn as in NLLB, or __en__ as in M2M100)",
                "only OPUS-MT, NLLB and M2M100 conversions are supported",
            )
    return FolderLayout(path, family, config, source_tokens, target_tokens, source_spm, target_spm)


def _load_spm(path: Path) -> Any:
    import sentencepiece

    try:
        return sentencepiece.SentencePieceProcessor(model_file=str(path))
    except (OSError, RuntimeError) as exc:
        raise ModelFormatError(
            f"{path} is not a SentencePiece model ({exc})", "copy the file again from the model's repository"
        ) from exc


class CT2Translator(Translator):
    """A ``ctranslate2.Translator`` for one language pair, with the family's tokenisation around it."""

    supports_context = True

    def __init__(self, folder: str | Path, source: str, target: str, options: CT2Options | None = None) -> None:
        import ctranslate2

        self.layout = inspect_folder(folder)
        self.source = source
        self.target = target
        self.options = options or CT2Options()
        self.family = self.layout.family
        self.description = f"CTranslate2 {self.family.value} ({self.layout.path})"
        self._source_specials, self._target_prefix = self._language_tokens()
        self._not_text = self._control_tokens()
        # Conversions through TransformersConverter leave the source's </s> to the caller; Marian's own
        # converter sets add_source_eos so the runtime appends it. Never add it twice.
        self._append_eos = not self.layout.config.get("add_source_eos", False)
        self._eos = self.layout.config.get("eos_token", "</s>")
        self._source_sp = _load_spm(self.layout.source_spm)
        self._target_sp = (
            self._source_sp if self.layout.target_spm == self.layout.source_spm else _load_spm(self.layout.target_spm)
        )
        try:
            self._model = ctranslate2.Translator(
                str(self.layout.path),
                device=self.options.device,
                compute_type=self.options.compute_type,
                inter_threads=1,
                intra_threads=self.options.intra_threads,
            )
        except (RuntimeError, ValueError) as exc:
            raise ModelFormatError(
                f"CTranslate2 cannot load {self.layout.path / 'model.bin'}: {exc}",
                "the file may be truncated or from a newer CTranslate2: pull or convert it again",
            ) from exc

    # -- tokens -------------------------------------------------------------------------------------------
    def _language_tokens(self) -> tuple[list[str], list[str]]:
        """Source tokens to put first, and the target prefix, for this family and pair."""
        vocab = set(self.layout.target_vocabulary)
        if self.family is Family.OPUS_MT:
            tags = sorted(t for t in self.layout.source_vocabulary if _MARIAN_TARGET_TOKEN.match(t))
            if not tags:
                return [], []  # a bilingual model: the folder itself is the pair
            iso3 = NLLB_CODES.get(self.target, "")[:3]
            for tag in (f">>{self.target}<<", f">>{iso3}<<"):
                if tag in tags:
                    return [tag], []
            raise LanguageError(
                f"the multi-target OPUS-MT model in {self.layout.path} cannot produce '{self.target}'",
                f"its target tags are: {', '.join(tags)}",
            )
        codes = NLLB_CODES if self.family is Family.NLLB else {k: f"__{k}__" for k in NLLB_CODES}
        known = sorted(k for k, tok in codes.items() if tok in vocab)
        for lang in (self.source, self.target):
            if codes.get(lang) not in vocab:
                raise LanguageError(
                    f"the {self.family.value} model in {self.layout.path} has no language token for '{lang}'",
                    f"it covers: {', '.join(known)}",
                )
        return [codes[self.source]], [codes[self.target]]

    def _control_tokens(self) -> frozenset[str]:
        """Output tokens that are never text (as ``skip_special_tokens`` in Hugging Face's decode).

        A multilingual model can emit a language token mid-sentence when it is unsure; spoken aloud it would be
        "eng underscore Latn", so it is dropped. M2M100 also pads its vocabulary with ``madeupwordN`` entries.
        """
        pattern = {Family.NLLB: _NLLB_TOKEN, Family.M2M100: _M2M_TOKEN, Family.OPUS_MT: _MARIAN_TARGET_TOKEN}[
            self.family
        ]
        special = {"<s>", "</s>", "<pad>", "<unk>", self.layout.config.get("eos_token", "</s>")}
        return frozenset(
            t for t in self.layout.target_vocabulary if pattern.match(t) or t in special or t.startswith("madeupword")
        )

    def _source_tokens(self, pieces: list[str]) -> list[str]:
        budget = self.options.max_input_length - len(self._source_specials) - (1 if self._append_eos else 0)
        return self._source_specials + pieces[: max(budget, 1)] + ([self._eos] if self._append_eos else [])

    def _decode_limit(self, sources: list[list[str]], prefix_len: int = 0) -> int:
        # Translations run about as long as their source; twice as long plus slack is generous for real models
        # and stops a degenerate one (repeating a token forever) early.
        longest = max(len(s) for s in sources)
        return min(self.options.max_decoding_length, 2 * longest + 10) + prefix_len

    def translate_pieces(self, texts: list[str]) -> list[list[str]]:
        """Target SentencePiece pieces for each text, without language or end tokens (blank input: [])."""
        cleaned = [bound_text(t) for t in texts]
        todo = [i for i, t in enumerate(cleaned) if t]
        out: list[list[str]] = [[] for _ in texts]
        if not todo:
            return out
        sources = [self._source_tokens(self._source_sp.encode(cleaned[i], out_type=str)) for i in todo]
        prefix = [list(self._target_prefix) for _ in todo] if self._target_prefix else None
        results = self._model.translate_batch(
            sources,
            target_prefix=prefix,
            beam_size=self.options.beam_size,
            max_batch_size=self.options.max_batch_size,
            max_input_length=self.options.max_input_length,
            max_decoding_length=self._decode_limit(sources, len(self._target_prefix)),
            disable_unk=True,
        )
        for i, result in zip(todo, results, strict=True):
            out[i] = self._text_pieces(result.hypotheses[0][len(self._target_prefix) :])
        return out

    def _text_pieces(self, hypothesis: list[str]) -> list[str]:
        return [t for t in hypothesis if t not in self._not_text]

    def detokenize(self, pieces: list[str]) -> str:
        return self._target_sp.decode(pieces).strip()

    # -- Translator ---------------------------------------------------------------------------------------
    def translate(self, texts: list[str]) -> list[str]:
        return [self.detokenize(p) if p else "" for p in self.translate_pieces(texts)]

    def translate_next(self, text: str, context: TranslationContext | None = None) -> str:
        """Translate ``text`` as the continuation of ``context`` (forced-prefix decoding).

        The encoder sees the previous clause and this one; the decoder is forced through the previous clause's
        translation as it was spoken, then continues, and only the continuation is returned. So pronouns,
        gender and register can follow from what came before without re-translating (and re-speaking) it.
        """
        text = bound_text(text)
        if not text:
            return ""
        if context is None or not context.source.strip() or not context.target.strip():
            return self.translate([text])[0]
        context_source = self._source_sp.encode(bound_text(context.source), out_type=str)
        context_target = self._target_sp.encode(bound_text(context.target), out_type=str)
        current = self._source_sp.encode(text, out_type=str)
        room = self.options.max_input_length - len(self._source_specials) - 1
        if (
            max(len(context_source), len(context_target)) > MAX_CONTEXT_TOKENS
            or len(context_source) + len(current) > room
        ):
            return self.translate([text])[0]
        source = self._source_tokens(context_source + current)
        prefix = self._target_prefix + context_target
        result = self._model.translate_batch(
            [source],
            target_prefix=[prefix],
            beam_size=self.options.beam_size,
            max_input_length=self.options.max_input_length,
            max_decoding_length=self._decode_limit([self._source_tokens(current)], len(prefix)),
            disable_unk=True,
        )[0]
        return self.detokenize(self._text_pieces(result.hypotheses[0][len(prefix) :]))

    def close(self) -> None:
        model = getattr(self, "_model", None)
        if model is not None:
            model.unload_model()
