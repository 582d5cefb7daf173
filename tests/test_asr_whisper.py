"""The Whisper wrapper and ``rt-f2f transcribe`` on real LibriVox speech; model loading and its failures; the
encoder window (what the encoder is handed, per call and per thread, and what is still heard with it)."""

from __future__ import annotations

import argparse
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from rt_f2f.asr import word_error_rate
from rt_f2f.asr.whisper import load_whisper, normalise_language
from rt_f2f.asr.window import FULL_WINDOW, STREAMING_WINDOW, EncoderWindow
from rt_f2f.errors import LanguageError, MediaError, ModelFormatError, ModelMissingError, RtF2fError
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


# -- the encoder window ----------------------------------------------------------------------------------------
class EncoderSpy:
    """Stands in for the CTranslate2 model and records the frame count of every encoder input, by thread."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.frames: list[tuple[int, int]] = []

    def encode(self, features, *args, **kwargs):
        self.frames.append((threading.get_ident(), int(features.shape[-1])))
        return self.inner.encode(features, *args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


@pytest.fixture
def encoder_spy(whisper_base, monkeypatch) -> EncoderSpy:
    spy = EncoderSpy(whisper_base.model.model)
    monkeypatch.setattr(whisper_base.model, "model", spy)
    return spy


def _frames(spy: EncoderSpy) -> list[int]:
    return [frames for _, frames in spy.frames]


def test_the_window_holds_the_buffer_plus_its_margin_in_few_sizes() -> None:
    window = EncoderWindow(step_s=5, min_s=10, pad_s=1.0)
    assert [window.seconds(s) for s in (0.0, 3.2, 8.9, 9.0, 9.1, 14.0, 19.5, 28.9, 29.5, 120.0)] == [
        10, 10, 10, 10, 15, 15, 25, 30, 30, 30,
    ]  # fmt: skip
    for seconds in np.linspace(0.0, 29.0, 59):
        assert window.seconds(seconds) >= seconds + 1.0 and window.frames(seconds) == 100 * window.seconds(seconds)
    assert {FULL_WINDOW.seconds(s) for s in (0.5, 7.0, 29.9, 61.0)} == {30}
    assert FULL_WINDOW.is_full and not STREAMING_WINDOW.is_full


def test_window_settings_are_read_and_checked() -> None:
    assert EncoderWindow.parse("5,10,1") == EncoderWindow(5, 10, 1.0)
    assert EncoderWindow.parse(" 2, 6 ") == EncoderWindow(2, 6, 1.0)
    assert EncoderWindow.parse("FULL") is FULL_WINDOW
    assert EncoderWindow.parse(STREAMING_WINDOW.describe()) == STREAMING_WINDOW
    for bad in ("", "5", "five,10", "5,10,1,0"):
        with pytest.raises(RtF2fError, match="cannot read") as caught:
            EncoderWindow.parse(bad)
        assert "full" in caught.value.hint
    with pytest.raises(RtF2fError, match="step_s") as caught:
        EncoderWindow(0, 10)
    assert "FULL_WINDOW" in caught.value.hint
    with pytest.raises(RtF2fError, match="min_s"):
        EncoderWindow(5, 31)
    with pytest.raises(RtF2fError, match="pad_s"):
        EncoderWindow(5, 10, -0.5)


def test_the_encoder_gets_the_window_not_30_s(whisper_base, librivox_clips, encoder_spy) -> None:
    clip = librivox_clips["0880"]  # 3 s: "he was not an ill disposed young man"
    audio = clip.audio()
    short = whisper_base.transcribe(audio, language="en", window=STREAMING_WINDOW)
    assert _frames(encoder_spy) == [1000]
    assert word_error_rate(clip.text, short.text) <= 0.2, short.text
    assert short.words[-1].end <= audio.size / 16000 + 0.1
    encoder_spy.frames.clear()
    whisper_base.transcribe(audio, language="en")  # offline callers keep Whisper's 30 s
    assert _frames(encoder_spy) == [3000]
    assert whisper_base.model.window.frames is None  # nothing of a call's window stays behind


def test_language_detection_also_hears_the_short_window(whisper_base, librivox_clips, encoder_spy) -> None:
    audio = librivox_clips["0930"].audio()  # 3.3 s
    result = whisper_base.transcribe(audio, window=EncoderWindow(2, 4, 1.0))
    assert result.language == "en"
    assert set(_frames(encoder_spy)) == {600}  # 3.3 s + 1 s margin, rounded up to 2 s steps


def test_a_longer_buffer_gets_a_longer_window_and_keeps_its_last_words(whisper_base, encoder_spy) -> None:
    from rt_f2f.audio import read_audio

    root = Path(__file__).resolve().parents[1] / "examples"
    audio = read_audio(root / "en_sample.wav", 16000)  # 11.6 s, three sentences
    reference = (root / "en_sample.txt").read_text()
    result = whisper_base.transcribe(audio, language="en", window=STREAMING_WINDOW)
    assert _frames(encoder_spy) == [1500]
    assert word_error_rate(reference, result.text) <= 0.2, result.text
    assert "amiable himself" in result.text.lower()


def test_a_buffer_longer_than_30_s_is_cut_into_whisper_windows(whisper_base, encoder_spy) -> None:
    from rt_f2f.audio import read_audio

    root = Path(__file__).resolve().parents[1] / "examples"
    once = read_audio(root / "en_sample.wav", 16000)
    audio = np.concatenate([once, once, once])  # 34.7 s: more than one encoder window holds
    reference = " ".join([(root / "en_sample.txt").read_text()] * 3)
    result = whisper_base.transcribe(audio, language="en", window=STREAMING_WINDOW)
    assert len(encoder_spy.frames) >= 2 and set(_frames(encoder_spy)) == {3000}
    assert word_error_rate(reference, result.text) <= 0.2, result.text
    assert result.words[-1].end > 33.0  # the audio after the first 30 s was heard


def test_each_thread_keeps_its_own_window(whisper_base, librivox_clips, encoder_spy) -> None:
    """One loaded model serves several stages at once; a call's window must not leak into another thread's."""
    audio = librivox_clips["0880"].audio()
    windows = {"short": STREAMING_WINDOW, "full": FULL_WINDOW}
    threads: dict[str, int] = {}
    barrier = threading.Barrier(2)

    def work(name: str) -> str:
        threads[name] = threading.get_ident()
        barrier.wait()
        return " ".join(whisper_base.transcribe(audio, language="en", window=windows[name]).text for _ in range(2))

    with ThreadPoolExecutor(2) as pool:
        texts = list(pool.map(work, windows))
    assert all("young man" in text.lower() for text in texts), texts
    by_thread = {name: {f for t, f in encoder_spy.frames if t == ident} for name, ident in threads.items()}
    assert by_thread == {"short": {1000}, "full": {3000}}
