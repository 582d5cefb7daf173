"""Shared fixtures: real English speech with reference transcripts, and one Whisper model per test session.

The LibriVox clips come from Debian's ``pocketsphinx-testdata`` (16 kHz, 3-7 s, one sentence each); tests that
need them are skipped where the package is not installed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

LIBRIVOX_DIR = Path("/usr/share/pocketsphinx/test/data/librivox")
_LINE = re.compile(r"^<s>\s*(?P<text>.*?)\s*</s>\s*\((?P<id>[^)]+)\)\s*$")


@dataclass(frozen=True)
class LibriVoxClip:
    id: str  # e.g. "sense_and_sensibility_01_austen_64kb-0880"
    path: Path
    text: str  # lower-case reference words, e.g. "he was not an ill disposed young man"

    def audio(self, sample_rate: int = 16000) -> np.ndarray:
        from rt_f2f.audio import read_audio

        return read_audio(self.path, sample_rate)


def parse_transcription(path: Path) -> dict[str, str]:
    """The ``transcription`` file's lines, ``<s> words </s> (id)``, as {id: words}."""
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if m := _LINE.match(line.strip()):
            out[m["id"]] = m["text"]
    return out


@pytest.fixture(scope="session")
def librivox_dir() -> Path:
    if not (LIBRIVOX_DIR / "transcription").is_file():
        pytest.skip("pocketsphinx-testdata is not installed (apt-get install pocketsphinx-testdata)")
    return LIBRIVOX_DIR


@pytest.fixture(scope="session")
def librivox_clips(librivox_dir: Path) -> dict[str, LibriVoxClip]:
    """Every clip that has both a wav and a transcript, keyed by the clip's number ("0870", "0880", ...)."""
    clips = {}
    for clip_id, text in parse_transcription(librivox_dir / "transcription").items():
        wav = librivox_dir / f"{clip_id}.wav"
        if wav.is_file():
            clips[clip_id.rsplit("-", 1)[-1]] = LibriVoxClip(clip_id, wav, text)
    if not clips:
        pytest.skip(f"no LibriVox wavs with transcripts in {librivox_dir}")
    return clips


@pytest.fixture(scope="session")
def librivox_clip(librivox_clips: dict[str, LibriVoxClip]) -> LibriVoxClip:
    """The longest clip (0870, 7.1 s): "and mister john dashwood had then leisure to consider how much ..."."""
    return max(librivox_clips.values(), key=lambda c: c.path.stat().st_size)


@pytest.fixture(scope="session")
def whisper_base():
    """whisper-base loaded once for the whole session (it takes seconds and ~150 MB)."""
    from rt_f2f.asr.whisper import load_whisper
    from rt_f2f.errors import ModelMissingError

    try:
        return load_whisper("whisper-base")
    except ModelMissingError as exc:
        pytest.skip(f"whisper-base is not available: {exc}")
