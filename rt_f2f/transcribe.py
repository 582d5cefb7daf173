"""``rt-f2f transcribe FILE``: the recogniser on its own, for any audio or video file.

Useful to check what the speech engine hears before translating anything: same model store, same Whisper
wrapper, offline decoding (beam 5, whole file at once) rather than the streaming policy.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .frames import Word


def transcribe_file(
    path: str | Path, language: str | None = None, model: str = "whisper-base", beam_size: int = 5
) -> tuple[str, str, list[Word]]:
    """(text, language, words) of the first audio stream of ``path``; words carry times in seconds from its start."""
    from .asr.whisper import load_whisper
    from .audio import read_audio
    from .rates import ENGINE_RATE

    audio = read_audio(path, sample_rate=ENGINE_RATE)  # a bad file fails before the model loads
    asr = load_whisper(model)
    language = asr.check_language(language)  # a bad code fails before minutes of decoding
    result = asr.transcribe(audio, language=language, beam_size=beam_size)
    return result.text, result.language, list(result.words)


def run(args: argparse.Namespace) -> int:
    text, _language, _words = transcribe_file(args.file, language=args.language, model=args.model)
    print(text)
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "transcribe", help="print what the speech recogniser hears in an audio or video file"
    )
    parser.add_argument("file", metavar="FILE", help="any audio or video file with an audio stream")
    parser.add_argument("--language", metavar="L", default=None, help="language code (default: detect)")
    parser.add_argument(
        "--model", metavar="NAME", default="whisper-base", help="model-store name or a faster-whisper folder"
    )
    parser.set_defaults(func=run)
