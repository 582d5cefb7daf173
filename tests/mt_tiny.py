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


def build_tiny_m2m100(dest: Path, seed: int = 0) -> Path:
    """An M2M100-like CTranslate2 folder: one SentencePiece model, ``__xx__`` language tokens in the vocabulary."""
    import torch
    from ctranslate2.converters import TransformersConverter
    from transformers import M2M100Config, M2M100ForConditionalGeneration, M2M100Tokenizer

    rng = random.Random(seed)
    work = dest.with_name(dest.name + "-hf")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    lines = _sentences(SOURCE_WORDS + TARGET_WORDS, 400, rng)
    spm_file = work / "sentencepiece.bpe.model"
    spm_file.write_bytes(_train_spm(lines, 150, bos_id=0, pad_id=1, eos_id=2, unk_id=3))
    (work / "vocab.json").write_text(json.dumps({piece: i for i, piece in enumerate(_pieces(spm_file))}))
    tokenizer = M2M100Tokenizer(str(work / "vocab.json"), str(spm_file))
    tokenizer.save_pretrained(work)
    full_vocab = {**M2M100Tokenizer.get_vocab(tokenizer), **tokenizer.lang_token_to_id}

    torch.manual_seed(seed)
    config = M2M100Config(
        vocab_size=len(full_vocab) + tokenizer.num_madeup_words,  # M2M100 ends its vocabulary with 8 "madeupword"s
        **TINY_TRANSFORMER,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
    )
    M2M100ForConditionalGeneration(config).save_pretrained(work)

    class Converter(TransformersConverter):
        # transformers 5's M2M100Tokenizer leaves the language tokens out of get_vocab(); the converter reads
        # the vocabulary from there, so hand it the full one (as older transformers did).
        def load_tokenizer(self, tokenizer_class, model_name_or_path, **kwargs):
            tok = M2M100Tokenizer.from_pretrained(model_name_or_path)
            tok.get_vocab = lambda: dict(full_vocab)
            return tok

    Converter(str(work), copy_files=["sentencepiece.bpe.model"]).convert(str(dest), force=True)
    shutil.rmtree(work)
    return dest


def nllb_layout_from_m2m100(m2m100: Path, dest: Path) -> Path:
    """The same network in NLLB's layout: NLLB is the M2M100 architecture with ``eng_Latn``-style tokens."""
    from rt_f2f.mt.ct2 import NLLB_CODES

    shutil.copytree(m2m100, dest, dirs_exist_ok=True)

    def rename(token: str) -> str:
        if not (token.startswith("__") and token.endswith("__")):
            return token
        iso = token.strip("_")
        return NLLB_CODES.get(iso) or f"{(iso + 'x')[:3]}_Latn"  # made-up but NLLB-shaped for the rest

    tokens = json.loads((dest / "shared_vocabulary.json").read_text())
    renamed = [rename(t) for t in tokens]
    assert len(set(renamed)) == len(renamed), "language tokens collided"
    (dest / "shared_vocabulary.json").write_text(json.dumps(renamed))
    return dest
