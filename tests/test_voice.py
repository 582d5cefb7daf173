"""Speaker embeddings, live enrolment and voice conversion, measured against a real speaker (a LibriVox reader)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rt_f2f.errors import MediaError, ModelFormatError, ModelMissingError, RtF2fError
from rt_f2f.frames import AudioChunk, Clause, SpeechChunk, Translation, Word
from rt_f2f.stage import LatencyLog, Pipeline
from rt_f2f.tts import get_synthesizer
from rt_f2f.voice import (
    OnnxVoiceConverter,
    SpeakerProfile,
    VCStage,
    VoiceConverter,
    cosine,
    embed,
    get_embedder,
)
from rt_f2f.voice.profile import VoiceStats

ENROL = ("0870", "0890")  # the profile learns from these LibriVox clips (one man reading) ...
HELD_OUT = ("0880", "0920", "0930")  # ... and similarity is judged against these, which it never heard


@pytest.fixture(scope="session")
def speaker_audio(librivox_clips) -> np.ndarray:
    return np.concatenate([librivox_clips[i].audio() for i in ENROL])


@pytest.fixture(scope="session")
def speaker_embedding(librivox_clips) -> np.ndarray:
    return embed(np.concatenate([librivox_clips[i].audio() for i in HELD_OUT]), 16000)


@pytest.fixture(scope="session")
def speaker(speaker_audio) -> VoiceStats:
    return SpeakerProfile.from_audio(speaker_audio, 16000).stats


@pytest.fixture(scope="session")
def tts_speech() -> dict[str, tuple[np.ndarray, int]]:
    piper = get_synthesizer("en", backend="piper")
    kokoro = get_synthesizer("pt", backend="kokoro")
    return {
        "piper-en": (piper.synthesize("The weather is lovely today, shall we go for a walk?", "en"), piper.sample_rate),
        "kokoro-pt": (kokoro.synthesize("Eu gostaria de um café e uma fatia de bolo.", "pt"), kokoro.sample_rate),
    }


# -- embeddings ----------------------------------------------------------------------------------------------------


def test_embedding_tells_the_speaker_from_tts(speaker_audio, speaker_embedding, tts_speech) -> None:
    e = embed(speaker_audio, 16000)
    assert e.shape == (256,) and e.dtype == np.float32
    assert np.linalg.norm(e) == pytest.approx(1.0, abs=1e-5)
    same_speaker = cosine(e, speaker_embedding)
    assert same_speaker > 0.8
    for audio, rate in tts_speech.values():
        assert cosine(embed(audio, rate), speaker_embedding) < same_speaker - 0.2


def test_embedding_rejects_bad_audio() -> None:
    with pytest.raises(MediaError, match="too short"):
        embed(np.zeros(100, np.float32), 16000)
    with pytest.raises(MediaError, match="NaN"):
        embed(np.full(16000, np.nan, np.float32), 16000)
    assert cosine(np.ones(4), np.ones(4)) == pytest.approx(1.0)
    assert cosine(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(0.0)


# -- live enrolment ------------------------------------------------------------------------------------------------


def test_profile_enrols_live_from_small_chunks(speaker_audio, speaker) -> None:
    profile = SpeakerProfile(min_speech_s=4.0, block_s=2.0)
    ready_at = None
    step = 320  # 20 ms chunks, as a microphone delivers them
    for start in range(0, speaker_audio.size, step):
        ready = profile.feed(speaker_audio[start : start + step], 16000)
        if ready and ready_at is None:
            ready_at = (start + step) / 16000
    assert ready_at is not None and 4.0 <= ready_at < 7.0  # ready after ~4 s of speech, not at the end
    stats = profile.stats
    assert 70 < stats.f0_hz < 140  # a man reading
    assert 0.05 < stats.log_f0_std < 0.4
    assert 2200 < stats.f3_hz < 3100
    assert stats.envelope.shape == (513,) and np.isfinite(stats.envelope).all()
    assert cosine(stats.embedding, speaker.embedding) > 0.9  # live and whole-file enrolment agree


def test_profile_ignores_silence_and_stops_listening_when_full(speaker_audio) -> None:
    profile = SpeakerProfile(min_speech_s=2.0, max_speech_s=4.0, block_s=1.0, embedder=False)
    rng = np.random.default_rng(0)
    assert not profile.feed(rng.normal(0, 1e-4, 16000 * 5).astype(np.float32), 16000)
    assert profile.speech_seconds == 0.0
    assert profile.feed(np.tile(speaker_audio, 3), 16000)  # 35 s offered, at most ~4 s analysed
    assert 4.0 <= profile.stats.speech_seconds < 5.0
    assert profile.stats.embedding is None
    with pytest.raises(MediaError):
        SpeakerProfile(embedder=False).feed(np.array([np.inf], np.float32), 16000)
    with pytest.raises(MediaError, match="no voiced speech"):
        SpeakerProfile.from_audio(np.zeros(16000 * 2, np.float32), 16000, embedder=False)


def test_profile_sees_a_higher_voice_in_female_tts() -> None:
    male = get_synthesizer("en", backend="kokoro")
    female = get_synthesizer("en", backend="kokoro", voice="jf_alpha")
    assert female.engine is male.engine and female.voice == "jf_alpha"  # another style vector, no second load
    audio = female.synthesize("The weather is lovely today, shall we go for a walk?", "en")
    stats = SpeakerProfile.from_audio(audio, female.sample_rate, embedder=False).stats
    assert stats.f0_hz > 180 and stats.f3_hz > 2800


# -- conversion ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["piper-en", "kokoro-pt"])
def test_conversion_moves_tts_toward_the_speaker(source, tts_speech, speaker, speaker_embedding) -> None:
    audio, rate = tts_speech[source]
    converter = VoiceConverter()
    converted = converter.convert(audio, rate, speaker)
    assert converted.shape == audio.shape and converted.dtype == np.float32
    assert np.sqrt(np.mean(converted**2)) == pytest.approx(np.sqrt(np.mean(audio**2)), rel=0.05)
    before = cosine(embed(audio, rate), speaker_embedding)
    after = cosine(embed(converted, rate), speaker_embedding)
    assert after > before + 0.05, (before, after)
    out = SpeakerProfile.from_audio(converted, rate, embedder=False).stats
    tts = SpeakerProfile.from_audio(audio, rate, embedder=False).stats
    assert abs(out.log_f0_mean - speaker.log_f0_mean) < abs(tts.log_f0_mean - speaker.log_f0_mean)
    assert abs(out.log_f0_mean - speaker.log_f0_mean) < 0.1  # within ~10 % of the speaker's pitch
    assert 0.8 <= converter.last.warp <= 1.25


def test_converter_leaves_silence_and_scraps_alone(speaker) -> None:
    converter = VoiceConverter()
    silence = np.zeros(22050, np.float32)
    assert np.array_equal(converter.convert(silence, 22050, speaker), silence)
    scrap = np.full(100, 0.1, np.float32)
    assert np.array_equal(converter.convert(scrap, 22050, speaker), scrap)
    with pytest.raises(MediaError, match="16 kHz"):
        converter.convert(np.ones(8000, np.float32), 8000, speaker)


# -- the neural converter slot -------------------------------------------------------------------------------------


def _onnx_converter(path: Path, audio_name="audio", speaker_dim=256, sample_rate: int | None = 16000) -> Path:
    """A tiny graph with the documented signature: output = audio * 0.5 + 0 * mean(speaker)."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("ReduceMean", ["speaker"], ["spk_mean"], keepdims=0),
        helper.make_node("Mul", ["spk_mean", "zero"], ["spk_zero"]),
        helper.make_node("Mul", [audio_name, "half"], ["scaled"]),
        helper.make_node("Add", ["scaled", "spk_zero"], ["converted"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-vc",
        [
            helper.make_tensor_value_info(audio_name, TensorProto.FLOAT, [1, "samples"]),
            helper.make_tensor_value_info("speaker", TensorProto.FLOAT, [1, speaker_dim]),
        ],
        [helper.make_tensor_value_info("converted", TensorProto.FLOAT, [1, "samples"])],
        initializer=[
            helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]),
            helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if sample_rate is not None:
        helper.set_model_props(model, {"sample_rate": str(sample_rate)})
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def test_onnx_converter_with_the_documented_signature_runs(tmp_path, speaker) -> None:
    converter = OnnxVoiceConverter(_onnx_converter(tmp_path / "vc.onnx"))
    assert converter.sample_rate == 16000
    x = np.sin(np.arange(16000) * 0.05).astype(np.float32) * 0.4
    assert np.allclose(converter.convert(x, 16000, speaker), 0.5 * x, atol=1e-6)
    y = converter.convert(np.tile(x, 2)[:22050], 22050, speaker)  # other rates go through the model's rate
    assert y.shape == (22050,) and np.abs(y).max() == pytest.approx(0.2, abs=0.02)
    no_embedding = VoiceStats(4.5, 0.2, np.zeros(513), 2500.0, 5.0, 3.0, embedding=None)
    with pytest.raises(RtF2fError, match="embedding"):
        converter.convert(x, 16000, no_embedding)


def test_onnx_converter_with_the_wrong_signature_says_what_it_expects(tmp_path) -> None:
    with pytest.raises(ModelFormatError, match=r"(?s)named \['speaker', 'wav'\].*expected inputs 'audio'"):
        OnnxVoiceConverter(_onnx_converter(tmp_path / "a.onnx", audio_name="wav"))
    with pytest.raises(ModelFormatError, match="'speaker' has 128 features"):
        OnnxVoiceConverter(_onnx_converter(tmp_path / "b.onnx", speaker_dim=128))
    garbage = tmp_path / "c.onnx"
    garbage.write_bytes(b"\x00not a model")
    with pytest.raises(ModelFormatError, match="not a loadable ONNX model"):
        OnnxVoiceConverter(garbage)
    with pytest.raises(ModelMissingError):
        OnnxVoiceConverter(tmp_path / "missing.onnx")


# -- the pipeline stage --------------------------------------------------------------------------------------------


async def test_vc_stage_passes_through_until_enrolled_then_converts(speaker_audio, tts_speech) -> None:
    audio, rate = tts_speech["piper-en"]
    clause = Clause("x", (Word(" x", 3.0, 3.5),), "pt", 0)
    speech = SpeechChunk(AudioChunk(audio, rate, 3.0, "tts:piper"), Translation(clause, "x", "en"), True, True)

    async def source():
        for start in range(0, 16000 * 2, 1600):  # 2 s of the speaker: not enough yet
            yield AudioChunk(speaker_audio[start : start + 1600], 16000, start / 16000)
        yield speech
        for start in range(16000 * 2, speaker_audio.size, 1600):  # the rest of their speech
            yield AudioChunk(speaker_audio[start : start + 1600], 16000, start / 16000)
        yield speech

    log = LatencyLog()
    stage = VCStage(profile=SpeakerProfile(min_speech_s=4.0, block_s=2.0, embedder=get_embedder()))
    out = [x async for x in Pipeline([stage], log=log).run(source())]
    assert len(out) == 2 and all(isinstance(x, SpeechChunk) for x in out)  # source audio is consumed
    passed, converted = out
    assert passed is speech
    assert converted.pts == 3.0 and converted.first and converted.last and converted.translation is speech.translation
    assert converted.audio.samples.shape == audio.shape and not np.allclose(converted.audio.samples, audio)
    assert converted.audio.source == "tts:piper+world"
    assert [e.converted for e in stage.events] == [False, True]
    assert "not ready" in stage.events[0].reason
    assert len(log.for_stage("vc:passthrough")) == 1 and len(log.for_stage("vc")) == 1


def test_vc_stage_keeps_one_converter_per_tts_voice_and_enrols_from_a_tap(tmp_path, speaker_audio) -> None:
    stage = VCStage(profile=SpeakerProfile(min_speech_s=1.0, block_s=1.0, embedder=False))
    piper_chunk = AudioChunk(np.zeros(10, np.float32), 22050, 0.0, "tts:piper")
    kokoro_chunk = AudioChunk(np.zeros(10, np.float32), 24000, 0.0, "tts:kokoro")
    assert stage.converter_for(piper_chunk) is stage.converter_for(piper_chunk)
    assert stage.converter_for(piper_chunk) is not stage.converter_for(kokoro_chunk)
    future = stage.enrol(AudioChunk(speaker_audio[: 16000 * 3], 16000, 0.0))  # returns at once: a tap can call it
    assert future.result(timeout=60) is True and stage.profile.ready
    stage.close()
    fixed = OnnxVoiceConverter(_onnx_converter(tmp_path / "vc.onnx"))
    assert VCStage(converter=fixed).converter_for(kokoro_chunk) is fixed
