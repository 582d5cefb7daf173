"""Text-to-speech: speech that Whisper understands, streamed phrase by phrase, voice chosen per language."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rt_f2f.audio import resample
from rt_f2f.errors import LanguageError, ModelFormatError, ModelMissingError, RtF2fError
from rt_f2f.frames import Clause, ControlEvent, ControlKind, SpeechChunk, Translation, Word
from rt_f2f.models import model_path
from rt_f2f.stage import LatencyLog, Pipeline
from rt_f2f.tts import TTSStage, candidates, get_synthesizer, split_phrases
from rt_f2f.tts.base import MAX_TEXT_CHARS, Synthesizer, split_first
from rt_f2f.tts.piper import PiperSynthesizer
from rt_f2f.tts.select import SpeakingPace


@pytest.fixture(scope="session")
def whisper(whisper_base):
    """The session's shared whisper-base (conftest), as the faster-whisper model it wraps."""
    return whisper_base.model


@pytest.fixture(scope="session")
def piper() -> Synthesizer:
    return get_synthesizer("en", backend="piper")


@pytest.fixture(scope="session")
def kokoro() -> Synthesizer:
    return get_synthesizer("pt", backend="kokoro")


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _transcribe(model, audio: np.ndarray, rate: int, language: str) -> str:
    segments, _ = model.transcribe(resample(audio, rate, 16000), language=language, beam_size=1, vad_filter=False)
    return " ".join(s.text for s in segments)


def _recall(reference: str, heard: str) -> float:
    ref, got = _words(reference), set(_words(heard))
    return sum(w in got for w in ref) / len(ref)


class Counting(Synthesizer):
    """Wraps a backend and counts model calls, to see how much was synthesised when a chunk came out."""

    def __init__(self, inner: Synthesizer) -> None:
        self.inner = inner
        self.name, self.sample_rate, self.languages = inner.name, inner.sample_rate, inner.languages
        self.clause_level, self.min_phrase_chars = inner.clause_level, inner.min_phrase_chars
        self.max_phrase_chars, self.pause_scale = inner.max_phrase_chars, inner.pause_scale
        self.calls = 0

    def synthesize_phrase(self, phrase: str, language: str, **kw) -> np.ndarray:
        self.calls += 1
        return self.inner.synthesize_phrase(phrase, language, **kw)


# -- phrase planning -----------------------------------------------------------------------------------------------


def test_split_phrases_sentences_clauses_and_merging() -> None:
    text = "Olá, meu amigo. O tempo está muito bonito hoje, e amanhã vai chover. Sim."
    assert split_phrases(text) == ["Olá, meu amigo.", "O tempo está muito bonito hoje, e amanhã vai chover. Sim."]
    assert split_phrases(text, clause_level=True) == [
        "Olá, meu amigo.",
        "O tempo está muito bonito hoje,",
        "e amanhã vai chover. Sim.",
    ]
    assert split_phrases("... -- !") == []
    assert split_phrases("今日は。いい天気ですね、散歩しましょう。", clause_level=True, min_chars=3) == [
        "今日は。",
        "いい天気ですね、",
        "散歩しましょう。",
    ]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(["word", "longerword", "a", ",", ".", "?", "x" * 30, "é"]), min_size=0, max_size=60),
    st.booleans(),
    st.integers(min_value=20, max_value=80),
)
def test_split_phrases_keeps_every_word_and_bounds_length(tokens, clause_level, max_chars) -> None:
    text = " ".join(tokens)
    pieces = split_phrases(text, clause_level=clause_level, min_chars=8, max_chars=max_chars)
    assert "".join(_words(" ".join(pieces))) == "".join(_words(text))  # over-long runs are cut, never lost
    assert all(len(p) <= max_chars for p in pieces)


def test_text_is_bounded(piper) -> None:
    with pytest.raises(RtF2fError, match="limit"):
        list(piper.stream("a " * MAX_TEXT_CHARS, "en"))


# -- backends ------------------------------------------------------------------------------------------------------


def test_piper_english_transcribes_back(piper, whisper) -> None:
    text = "The weather is lovely today. Shall we go for a walk in the park?"
    audio = piper.synthesize(text, "en")
    assert audio.dtype == np.float32 and piper.sample_rate == 22050
    assert 2.0 < len(audio) / piper.sample_rate < 8.0
    heard = _transcribe(whisper, audio, piper.sample_rate, "en")
    assert _recall(text, heard) >= 0.8, heard


def test_piper_streams_sentence_by_sentence(piper) -> None:
    counting = Counting(piper)
    stream = counting.stream("Good morning. How are you today? I am fine, thank you.", "en")
    first = next(stream)
    assert counting.calls == 1 and len(first) > 0.3 * piper.sample_rate  # first audio before the rest is made
    rest = list(stream)
    assert len(rest) == 2 and counting.calls == 3
    assert np.abs(rest[0][: int(0.2 * piper.sample_rate)]).max() == 0.0  # the pause after a sentence leads the next


def test_kokoro_portuguese_transcribes_back(kokoro, whisper) -> None:
    text = "O tempo está muito bonito hoje. Vamos passear no parque?"
    chunks = list(kokoro.stream(text, "pt"))
    assert len(chunks) == 2 and kokoro.sample_rate == 24000
    heard = _transcribe(whisper, np.concatenate(chunks), kokoro.sample_rate, "pt")
    assert _recall(text, heard) >= 0.7, heard
    assert {"tempo", "hoje", "parque"} <= set(_words(heard)), heard


def test_split_first_cuts_only_a_long_first_phrase() -> None:
    assert split_first(["one two three four five six", "seven."], 4) == ["one two three four", "five six", "seven."]
    assert split_first(["one two three four five", "six."], 4) == ["one two three four five", "six."]  # tail of 1
    assert split_first(["one two three four five six"], None) == ["one two three four five six"]
    assert split_first([], 4) == []


def test_kokoro_speaks_faster_in_the_model_when_asked(kokoro) -> None:
    normal = kokoro.phrase_audio(["Vamos passear no parque hoje."], 0, "pt")
    faster = kokoro.phrase_audio(["Vamos passear no parque hoje."], 0, "pt", speed=1.3)
    assert faster.size / normal.size == pytest.approx(1 / 1.3, abs=0.08)


def test_speaking_pace_follows_the_listeners_backlog() -> None:
    now = [100.0]
    pace = SpeakingPace(max_speed=1.3, gain=0.15, clock=lambda: now[0])
    assert pace.speed() == 1.0  # nothing voiced yet
    pace.voiced(2.0)  # 2 s of speech out at t=100: the listener hears it until 102
    assert pace.backlog() == pytest.approx(2.0) and pace.speed() == pytest.approx(1.3)
    now[0] = 101.0
    assert pace.speed() == pytest.approx(1.15)
    pace.voiced(1.0)  # queued behind the rest: heard until 103
    assert pace.backlog() == pytest.approx(2.0)
    now[0] = 110.0
    assert pace.speed() == 1.0  # caught up
    with pytest.raises(RtF2fError):
        SpeakingPace(max_speed=3.0)


def test_kokoro_splits_at_clauses_and_streams(kokoro) -> None:
    counting = Counting(kokoro)
    stream = counting.stream("Eu gostaria de um café, e também de uma fatia de bolo.", "pt")
    first = next(stream)
    assert counting.calls == 1 and len(first) > 0.3 * kokoro.sample_rate
    assert len(list(stream)) == 1 and counting.calls == 2
    assert "ʒ" in kokoro.phonemes("hoje", "pt")  # Portuguese phonemes, not English letter-to-sound
    with pytest.raises(LanguageError):
        kokoro.phonemes("Guten Tag", "de")


def test_espeak_is_the_fallback_for_other_languages() -> None:
    synth = get_synthesizer("de")
    assert synth.name == "espeak"
    chunks = list(synth.stream("Guten Morgen. Wie geht es Ihnen heute?", "de"))
    assert len(chunks) == 2
    audio = np.concatenate(chunks)
    assert 1.0 < len(audio) / synth.sample_rate < 6.0
    assert np.sqrt(np.mean(audio**2)) > 0.01


# -- choosing a voice ----------------------------------------------------------------------------------------------


def test_selection_rules(piper, kokoro, tmp_path, monkeypatch) -> None:
    assert candidates("en") == ["piper", "kokoro", "espeak"]
    assert candidates("pt") == ["kokoro", "espeak"]
    assert get_synthesizer("en") is piper  # loaded voices are shared
    assert get_synthesizer("pt-BR") is kokoro  # region subtags are forgiven
    assert get_synthesizer("en", backend="kokoro") is kokoro
    assert get_synthesizer("en", backend="espeak").name == "espeak"
    with pytest.raises(LanguageError):
        get_synthesizer("xx")
    with pytest.raises(LanguageError):
        get_synthesizer("de", backend="kokoro")
    monkeypatch.setenv("RT_F2F_HOME", str(tmp_path))  # a store where no hub voice was pulled
    with pytest.raises(ModelMissingError, match="piper-pt_BR-faber-medium"):
        get_synthesizer("pt", backend="piper")
    with pytest.raises(RtF2fError, match="unknown TTS backend"):
        get_synthesizer("en", backend="festival")
    with pytest.raises(RtF2fError, match="without its backend"):
        get_synthesizer("en", voice="jm_kumo")
    with pytest.raises(ModelMissingError, match="jf_nobody"):
        get_synthesizer("pt", backend="kokoro", voice="jf_nobody")
    with pytest.raises(LanguageError):
        list(piper.stream("Olá", "pt"))


def test_piper_voice_by_path_and_bad_voices(tmp_path, monkeypatch) -> None:
    voice = PiperSynthesizer(model_path("piper-en_US-joe-medium"))
    assert voice.languages == {"en"} and voice.sample_rate == 22050
    with pytest.raises(ModelMissingError):
        PiperSynthesizer(tmp_path / "nowhere.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx graph")
    with pytest.raises(ModelFormatError, match="no config"):
        PiperSynthesizer(broken)
    (tmp_path / "broken.onnx.json").write_text(
        json.dumps(json.loads(model_path("piper-en_US-joe-medium").with_suffix(".onnx.json").read_text()))
    )
    with pytest.raises(ModelFormatError):
        PiperSynthesizer(broken)
    monkeypatch.setenv("RT_F2F_HOME", str(tmp_path / "empty-store"))  # a store where nothing was pulled
    with pytest.raises(ModelMissingError, match="models pull piper-pt_BR-faber-medium"):
        PiperSynthesizer("piper-pt_BR-faber-medium")


# -- the pipeline stage --------------------------------------------------------------------------------------------


def _translation(text: str, start: float = 12.5) -> Translation:
    clause = Clause(
        "source text", (Word(" source", start, start + 0.4), Word(" text", start + 0.4, start + 0.8)), "pt", 3
    )
    return Translation(clause, text, "en")


async def test_tts_stage_streams_flags_timestamps_and_latency(piper) -> None:
    async def source():
        yield _translation("Hello there. How are you? Fine, thanks.")
        yield ControlEvent(ControlKind.END_OF_SPEECH, 14.0)
        yield _translation("...", start=20.0)

    log = LatencyLog()
    stage = TTSStage(piper)
    out = [x async for x in Pipeline([stage], log=log).run(source())]
    speech = [x for x in out if isinstance(x, SpeechChunk)]
    first_clause = speech[:-1]
    assert len(first_clause) == 3
    assert [c.first for c in first_clause] == [True, False, False]
    assert [c.last for c in first_clause] == [False, False, True]
    assert first_clause[0].pts == 12.5
    for a, b in zip(first_clause, first_clause[1:], strict=False):
        assert b.pts == pytest.approx(a.audio.end)
    assert all(c.audio.sample_rate == 22050 and c.audio.duration > 0.3 for c in first_clause)
    assert isinstance(out[3], ControlEvent)  # control frames pass through, in order
    empty = speech[-1]
    assert empty.first and empty.last and empty.audio.duration == 0 and empty.pts == 20.0
    records = log.for_stage("tts")
    assert len(records) == 4 and records[0].media_in == 12.5
    assert [r.media_out for r in records[:3]] == [c.pts for c in first_clause]
    assert len(stage.stats.first_audio_s) == 1 and stage.stats.first_audio_s[0] == pytest.approx(records[0].compute)
    assert records[0].compute < records[2].compute  # the first chunk left before the clause was finished
    assert stage.stats.rtf > 0


async def test_tts_stage_cuts_a_slow_voices_first_phrase_and_speeds_up_when_behind(kokoro) -> None:
    text = "O tempo está muito bonito hoje. Vamos passear no parque?"

    async def source():
        yield Translation(_translation("x").source, text, "pt")
        yield Translation(_translation("y", start=20.0).source, text, "pt")

    now = [0.0]
    pace = SpeakingPace(clock=lambda: now[0])  # time stands still: the first clause is all backlog for the second
    counting = Counting(kokoro)
    counting.rate_control = True
    stage = TTSStage(counting, pace=pace, first_phrase_words=4)
    out = [x async for x in Pipeline([stage]).run(source())]
    assert counting.calls == 6  # "O tempo está muito" | "bonito hoje." | "Vamos passear no parque?", twice
    assert stage.stats.speeds[0] == 1.0 and stage.stats.speeds[1] == pytest.approx(1.3)
    first = sum(c.audio.duration for c in out[:3])
    second = sum(c.audio.duration for c in out[3:])
    assert second < first / 1.15  # the model spoke the same text faster, pauses included


async def test_tts_stage_picks_a_voice_per_language(kokoro) -> None:
    async def source():
        yield Translation(_translation("x").source, "Bom dia.", "pt")

    out = [x async for x in Pipeline([TTSStage()]).run(source())]
    assert len(out) == 1 and out[0].audio.sample_rate == kokoro.sample_rate and out[0].audio.source == "tts:kokoro"
