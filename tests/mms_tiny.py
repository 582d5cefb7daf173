"""A tiny, random-weight MMS-TTS (VITS) voice in the exact folder layout of ``facebook/mms-tts-*``, for the tests.

No MMS voice can be downloaded here, so the tests build one in miniature with ``transformers``: a character
vocabulary over the language's script (as the real voices have), a ``VitsModel`` with a few thousand random
parameters, and ``save_pretrained`` writing ``config.json``, ``model.safetensors`` and the tokenizer files. The
loading and synthesis code under test is the code that runs on real voices; the sound is noise, so nothing here
says anything about speech quality. Needs ``transformers`` (a test-only dependency).
"""

from __future__ import annotations

import json
from pathlib import Path

TINY_VITS = dict(
    hidden_size=16,
    num_hidden_layers=1,
    num_attention_heads=2,
    ffn_dim=32,
    flow_size=16,
    spectrogram_bins=33,
    upsample_initial_channel=16,
    upsample_rates=[8, 8, 2, 2],
    upsample_kernel_sizes=[16, 16, 4, 4],
    resblock_kernel_sizes=[3],
    resblock_dilation_sizes=[[1, 3]],
    prior_encoder_num_flows=1,
    prior_encoder_num_wavenet_layers=1,
    posterior_encoder_num_wavenet_layers=1,
    duration_predictor_filter_channels=16,
    duration_predictor_num_flows=1,
    depth_separable_num_layers=1,
    sampling_rate=16000,
)


def build_tiny_mms(dest: Path, language_iso3: str, alphabet: str, seed: int = 0) -> Path:
    """A VITS voice whose tokenizer reads the characters of ``alphabet`` (one script), saved at ``dest``."""
    import torch
    from transformers import VitsConfig, VitsModel, VitsTokenizer

    dest.mkdir(parents=True, exist_ok=True)
    chars = ["|", "<unk>", " "] + sorted(set(alphabet) - {" "})  # MMS voices pad with "|" (or a letter), unk last
    vocab = {c: i for i, c in enumerate(chars)}
    (dest / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    tokenizer = VitsTokenizer(
        str(dest / "vocab.json"), pad_token="|", unk_token="<unk>", language=language_iso3, add_blank=True,
        normalize=True, phonemize=False, is_uroman=False,
    )  # fmt: skip
    tokenizer.save_pretrained(dest)
    torch.manual_seed(seed)
    VitsModel(VitsConfig(vocab_size=len(vocab), **TINY_VITS)).save_pretrained(dest)
    return dest
