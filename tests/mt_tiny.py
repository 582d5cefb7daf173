"""Tiny, random-weight translation models in the exact folder layouts users pull, built for the tests.

No real OPUS-MT / NLLB / M2M100 model can be downloaded here, so the tests build the same thing in miniature:
SentencePiece models trained on a generated corpus, a ``transformers`` model with a few thousand random
parameters over that vocabulary, and CTranslate2's own ``TransformersConverter`` to write ``model.bin``,
``config.json`` and ``shared_vocabulary.json`` with the tokenizer files copied beside them. The loading and
decoding code under test is then the code that runs on real models; only the weights are nonsense, so nothing
here says anything about translation quality.

Needs ``transformers`` (a test-only dependency).
"""

from __future__ import annotations

import io
import json
import random
import shutil
from pathlib import Path

SOURCE_WORDS = (
    "the a house cat dog is red blue big small runs sees my your we they go home today tomorrow water bread "
    "green old new eats drinks reads book table chair window door garden street city friend mother father"
).split()
TARGET_WORDS = (
    "o a casa gato cão é vermelho azul grande pequeno corre vê meu seu nós eles vamos lar hoje amanhã água pão "
    "verde velho novo come bebe lê livro mesa cadeira janela porta jardim rua cidade amigo mãe pai"
).split()


# A few thousand parameters: enough for the real conversion and decoding code to run, fast to build.
# init_std 1.0: large random weights make the output depend on the input, so tests can tell inputs apart.
TINY_TRANSFORMER = dict(
    d_model=16,
    encoder_layers=1,
    decoder_layers=1,
    encoder_attention_heads=2,
    decoder_attention_heads=2,
    encoder_ffn_dim=32,
    decoder_ffn_dim=32,
    max_position_embeddings=512,
    init_std=1.0,
)


def _sentences(words: list[str], n: int, rng: random.Random) -> list[str]:
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 10))) for _ in range(n)]


def _train_spm(lines: list[str], vocab_size: int, **ids: int) -> bytes:
    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        hard_vocab_limit=False,
        character_coverage=1.0,
        num_threads=1,
        minloglevel=2,
        **ids,
    )
    return model.getvalue()


def _pieces(spm_file: Path) -> list[str]:
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=str(spm_file))
    return [sp.id_to_piece(i) for i in range(sp.get_piece_size())]


def build_tiny_opus_mt(dest: Path, seed: int = 0) -> Path:
    """An OPUS-MT-like CTranslate2 folder (MarianMT, d_model 16, one layer each side) at ``dest``.

    Source and target have their own SentencePiece models (as OPUS-MT does) and share one vocabulary. The
    output projection's bias rules out source-only pieces, as training would, so every output piece is a
    target-side piece that ``target.spm`` can detokenise.
    """
    import torch
    from ctranslate2.converters import TransformersConverter
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    rng = random.Random(seed)
    work = dest.with_name(dest.name + "-hf")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    spm_ids = {"unk_id": 2, "eos_id": 1, "bos_id": -1, "pad_id": -1}
    (work / "source.spm").write_bytes(_train_spm(_sentences(SOURCE_WORDS, 300, rng), 100, **spm_ids))
    (work / "target.spm").write_bytes(_train_spm(_sentences(TARGET_WORDS, 300, rng), 100, **spm_ids))
    target_pieces = set(_pieces(work / "target.spm"))
    vocab = ["</s>", "<unk>"]
    for piece in _pieces(work / "source.spm") + _pieces(work / "target.spm"):
        if piece not in vocab and piece != "<s>":
            vocab.append(piece)
    vocab.append("<pad>")  # Marian's convention: pad last (CTranslate2's converter drops it)
    (work / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}))
    MarianTokenizer(str(work / "source.spm"), str(work / "target.spm"), str(work / "vocab.json")).save_pretrained(work)

    torch.manual_seed(seed)
    pad = len(vocab) - 1
    config = MarianConfig(
        vocab_size=len(vocab),
        **TINY_TRANSFORMER,
        pad_token_id=pad,
        eos_token_id=0,
        decoder_start_token_id=pad,
        share_encoder_decoder_embeddings=True,
    )
    model = MarianMTModel(config)
    with torch.no_grad():
        for i, token in enumerate(vocab):
            if token not in target_pieces:
                model.final_logits_bias[0, i] = -1e4
    model.save_pretrained(work)
    TransformersConverter(str(work), copy_files=["source.spm", "target.spm"]).convert(str(dest), force=True)
    shutil.rmtree(work)
    return dest


def _m2m100_tokenizer(work: Path, lines: list[str], vocab_size: int):
    """An M2M100 tokenizer over a SentencePiece model trained on ``lines``, saved in ``work``; and its full
    vocabulary (pieces and ``__xx__`` language tokens)."""
    from transformers import M2M100Tokenizer

    spm_file = work / "sentencepiece.bpe.model"
    spm_file.write_bytes(_train_spm(lines, vocab_size, bos_id=0, pad_id=1, eos_id=2, unk_id=3))
    (work / "vocab.json").write_text(json.dumps({piece: i for i, piece in enumerate(_pieces(spm_file))}))
    tokenizer = M2M100Tokenizer(str(work / "vocab.json"), str(spm_file))
    tokenizer.save_pretrained(work)
    return tokenizer, {**M2M100Tokenizer.get_vocab(tokenizer), **tokenizer.lang_token_to_id}


def _m2m100_config(tokenizer, full_vocab: dict[str, int], **layers: object):
    from transformers import M2M100Config

    return M2M100Config(
        vocab_size=len(full_vocab) + tokenizer.num_madeup_words,  # M2M100 ends its vocabulary with 8 "madeupword"s
        **{**TINY_TRANSFORMER, **layers},
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
    )


def _convert_m2m100(work: Path, dest: Path, full_vocab: dict[str, int]) -> None:
    from ctranslate2.converters import TransformersConverter
    from transformers import M2M100Tokenizer

    class Converter(TransformersConverter):
        # transformers 5's M2M100Tokenizer leaves the language tokens out of get_vocab(); the converter reads
        # the vocabulary from there, so hand it the full one (as older transformers did).
        def load_tokenizer(self, tokenizer_class, model_name_or_path, **kwargs):
            tok = M2M100Tokenizer.from_pretrained(model_name_or_path)
            tok.get_vocab = lambda: dict(full_vocab)
            return tok

    Converter(str(work), copy_files=["sentencepiece.bpe.model"]).convert(str(dest), force=True)
    shutil.rmtree(work)


def build_tiny_m2m100(dest: Path, seed: int = 0) -> Path:
    """An M2M100-like CTranslate2 folder: one SentencePiece model, ``__xx__`` language tokens in the vocabulary."""
    import torch
    from transformers import M2M100ForConditionalGeneration

    rng = random.Random(seed)
    work = dest.with_name(dest.name + "-hf")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    tokenizer, full_vocab = _m2m100_tokenizer(work, _sentences(SOURCE_WORDS + TARGET_WORDS, 400, rng), 150)
    torch.manual_seed(seed)
    M2M100ForConditionalGeneration(_m2m100_config(tokenizer, full_vocab)).save_pretrained(work)
    _convert_m2m100(work, dest, full_vocab)
    return dest


def nllb_layout_from_m2m100(m2m100: Path, dest: Path, extra: dict[str, str] | None = None) -> Path:
    """The same network in NLLB's layout: NLLB is the M2M100 architecture with ``eng_Latn``-style tokens.

    ``extra`` renames M2M100 language tokens that have no rt-f2f code (``{"kn": "tel_Telu"}``) to NLLB codes
    M2M100 lacks.
    """
    from rt_f2f.mt.ct2 import NLLB_CODES

    shutil.copytree(m2m100, dest, dirs_exist_ok=True)

    def rename(token: str) -> str:
        if not (token.startswith("__") and token.endswith("__")):
            return token
        iso = token.strip("_")
        if extra and iso in extra:
            return extra[iso]
        return NLLB_CODES.get(iso) or f"{(iso + 'x')[:3]}_Latn"  # made-up but NLLB-shaped for the rest

    tokens = json.loads((dest / "shared_vocabulary.json").read_text())
    renamed = [rename(t) for t in tokens]
    assert len(set(renamed)) == len(renamed), "language tokens collided"
    (dest / "shared_vocabulary.json").write_text(json.dumps(renamed))
    return dest


def _letters(first: int, last: int) -> str:
    """The assigned letters and marks (vowel signs, viramas) of a Unicode range."""
    import unicodedata

    chars = (chr(c) for c in range(first, last + 1))
    return "".join(c for c in chars if unicodedata.name(c, "") and unicodedata.category(c)[0] in "LM")


# Letters of the six languages of the seed paper's translator, by NLLB code (Urdu is written in Arabic letters,
# with the letters Urdu adds)
SEED_SCRIPT_LETTERS = {
    "eng_Latn": "abcdefghijklmnopqrstuvwxyz",
    "hin_Deva": _letters(0x0901, 0x094D),
    "tel_Telu": _letters(0x0C01, 0x0C4D),
    "mal_Mlym": _letters(0x0D02, 0x0D4D),
    "tam_Taml": _letters(0x0B82, 0x0BCD),
    "urd_Arab": _letters(0x0621, 0x064A) + "ٹپچڈڑژکگںھہیے",
}
# M2M100 has no Telugu token: a spare one (Kannada's) is renamed, as nllb_layout_from_m2m100's ``extra`` allows
_SEED_M2M_TOKEN = {
    "eng_Latn": "en",
    "hin_Deva": "hi",
    "tel_Telu": "kn",
    "mal_Mlym": "ml",
    "tam_Taml": "ta",
    "urd_Arab": "ur",
}


def _pseudo_words(letters: str, n: int, rng: random.Random) -> list[str]:
    return ["".join(rng.choice(letters) for _ in range(rng.randint(2, 4))) for _ in range(n)]


def build_tiny_seed_nllb(dest: Path, seed: int = 0, steps: int = 400) -> Path:
    """A tiny NLLB-format CTranslate2 folder that writes each of the six seed languages in its own script.

    Random weights would emit any piece; this model is trained for a few hundred steps (seconds) on pairs whose
    target is random pseudo-words in the target language's letters, so what it learns is only which script follows
    which target language token. The words mean nothing: it says nothing about translation quality, but the
    language codes and scripts of a pipeline built on it can be checked.
    """
    import torch
    from transformers import M2M100ForConditionalGeneration

    rng = random.Random(seed)
    work = dest.with_name(dest.name + "-hf")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    lexicon = {code: _pseudo_words(letters, 40, rng) for code, letters in SEED_SCRIPT_LETTERS.items()}
    lexicon["eng_Latn"] = list(SOURCE_WORDS)
    lines = [" ".join(rng.choice(words) for _ in range(6)) for words in lexicon.values() for _ in range(200)]
    tokenizer, full_vocab = _m2m100_tokenizer(work, lines, 400)
    lang_id = {code: tokenizer.lang_token_to_id[f"__{iso}__"] for code, iso in _SEED_M2M_TOKEN.items()}
    torch.manual_seed(seed)
    # wider than TINY_TRANSFORMER: at d_model 16 it did not learn the token-to-script rule for every pair
    config = _m2m100_config(tokenizer, full_vocab, d_model=32, encoder_ffn_dim=64, decoder_ffn_dim=64, init_std=0.02)
    model = M2M100ForConditionalGeneration(config)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    codes = list(SEED_SCRIPT_LETTERS)

    def encode(code: str) -> list[int]:
        text = " ".join(rng.choice(lexicon[code]) for _ in range(rng.randint(2, 5)))
        return [lang_id[code]] + tokenizer.sp_model.encode(text)[:12] + [2]

    def padded(rows: list[list[int]], fill: int) -> torch.Tensor:
        width = max(len(r) for r in rows)
        return torch.tensor([r + [fill] * (width - len(r)) for r in rows])

    model.train()
    for _ in range(steps):
        pairs = [(rng.choice(codes), rng.choice(codes)) for _ in range(16)]
        src = [encode(s) for s, _ in pairs]
        tgt = [encode(t) for _, t in pairs]
        loss = model(input_ids=padded(src, 1), attention_mask=padded(src, 1).ne(1), labels=padded(tgt, -100)).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    model.save_pretrained(work)

    m2m = dest.with_name(dest.name + "-m2m")
    _convert_m2m100(work, m2m, full_vocab)
    nllb_layout_from_m2m100(m2m, dest, extra={"kn": "tel_Telu"})
    shutil.rmtree(m2m)
    return dest
