"""The Whisper wrapper and ``rt-f2f transcribe`` on real LibriVox speech; model loading and its failures."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from rt_f2f.asr import word_error_rate
from rt_f2f.asr.whisper import load_whisper, normalise_language
from rt_f2f.errors import LanguageError, MediaError, ModelFormatError, ModelMissingError
from rt_f2f.models import model_path
from rt_f2f.transcribe import add_subcommand, transcribe_file


def test_a_clip_is_transcribed_with_word_times(whisper_base, librivox_clips) -> None:
    clip = librivox_clips["0880"]
    audio = clip.audio()
    result = whisper_base.transcribe(audio, language="en")
    assert word_error_rate(clip.text, result.text) <= 0.2, result.text
    assert result.language == "en"
    starts = [w.start for w in result.words]
    assert starts == sorted(starts)
    assert all(0.0 <= w.start <= w.end <= audio.size / 16000 + 0.1 for w in result.words)
    assert all(0.0 <= w.probability <= 1.0 for w in result.words)

    shifted = whisper_base.transcribe(audio, language="en", offset=100.0)
    assert [w.text for w in shifted.words] == [w.text for w in result.words]
    assert [w.start for w in shifted.words] == pytest.approx([w.start + 100.0 for w in result.words], abs=1e-3)


def test_language_codes_are_normalised_or_refused_with_the_valid_ones(whisper_base) -> None:
    assert whisper_base.check_language("EN-us") == "en"
    assert whisper_base.check_language("pt_BR") == "pt"
    assert whisper_base.check_language(None) is None
    with pytest.raises(LanguageError) as caught:
        whisper_base.check_language("klingon")
    assert "klingon" in caught.value.message
    assert all(code in caught.value.hint for code in (" de,", " en,", " es,", " pt,"))
    with pytest.raises(LanguageError):
        normalise_language("xx", ("en", "de"))


def test_bad_audio_is_refused_and_a_blip_gives_no_words(whisper_base) -> None:
    with pytest.raises(MediaError, match="mono"):
        whisper_base.transcribe(np.zeros((1600, 2), np.float32))
    with pytest.raises(MediaError, match="NaN"):
        whisper_base.transcribe(np.full(16000, np.nan, np.float32))
    assert whisper_base.transcribe(np.zeros(800, np.float32), language="en").words == ()


def test_the_model_loads_once_by_name_or_folder(whisper_base) -> None:
    assert load_whisper("whisper-base") is whisper_base
    assert load_whisper(model_path("whisper-base")) is whisper_base


def test_missing_and_broken_models_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ModelMissingError, match="no such"):
        load_whisper(tmp_path / "nowhere")
    with pytest.raises(ModelMissingError, match="unknown model"):
        load_whisper("whisper-gigantic")
    with pytest.raises(ModelFormatError, match="model.bin"):
        load_whisper(tmp_path)
    (tmp_path / "model.bin").write_bytes(b"not a model" * 100)
    with pytest.raises(ModelFormatError, match="cannot load"):
        load_whisper(tmp_path)


def _speech_video(path: Path, audio48k: np.ndarray) -> Path:
    """An MP4 with a small MPEG-4 video track and the speech as AAC: what a phone or camera records."""
    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        sound = container.add_stream("aac", rate=48000)
        sound.layout = "mono"
        for i in range(int(audio48k.size / 48000 * 10)):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 8 % 256, np.uint8), format="rgb24")
            frame.pts = i
            container.mux(video.encode(frame))
        container.mux(video.encode())
        for i in range(0, audio48k.size, 1024):
            frame = av.AudioFrame.from_ndarray(audio48k[None, i : i + 1024], format="flt", layout="mono")
            frame.sample_rate, frame.pts = 48000, i
            container.mux(sound.encode(frame))
        container.mux(sound.encode())
    return path


def test_transcribe_file_reads_the_audio_of_a_video(whisper_base, librivox_clips, tmp_path: Path) -> None:
    clip = librivox_clips["0890"]
    video = _speech_video(tmp_path / "talk.mp4", clip.audio(48000))
    text, language, words = transcribe_file(video)  # no language given: Whisper detects it
    assert language == "en"
    assert word_error_rate(clip.text, text) <= 0.2, text
    assert words and words[-1].end <= clip.audio().size / 16000 + 0.2


def _cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_subcommand(parser.add_subparsers())
    return parser.parse_args(argv)


def test_the_transcribe_command_prints_the_transcript(whisper_base, librivox_clips, capsys) -> None:
    clip = librivox_clips["0880"]
    args = _cli(["transcribe", str(clip.path), "--language", "en", "--model", "whisper-base"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out.strip()
    assert word_error_rate(clip.text, printed) <= 0.2, printed


def test_the_transcribe_command_fails_clearly(whisper_base, librivox_clips, tmp_path: Path) -> None:
    args = _cli(["transcribe", str(librivox_clips["0880"].path), "--language", "xx"])
    with pytest.raises(LanguageError):
        args.func(args)
    args = _cli(["transcribe", str(tmp_path / "missing.wav")])
    with pytest.raises(MediaError, match="no such file"):
        args.func(args)
    (tmp_path / "noise.wav").write_bytes(b"RIFF not really a wav")
    args = _cli(["transcribe", str(tmp_path / "noise.wav")])
    with pytest.raises(MediaError):
        args.func(args)
