"""VAD segmentation on real speech: boundaries, the session clock at any sample rate, partials, cuts and limits."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rt_f2f.audio import resample
from rt_f2f.errors import MediaError, RtF2fError
from rt_f2f.frames import AudioChunk, ControlEvent, ControlKind, SpeechSegment
from rt_f2f.stage import LatencyLog, Pipeline
from rt_f2f.vad import StreamResampler, VADConfig, VADSegmenter, VADStage, find_speech

SR = 16000


def _quiet(seconds: float, seed: int = 0) -> np.ndarray:
    """Room tone: faint noise, so 'silence' is not digital zero."""
    return (np.random.default_rng(seed).standard_normal(int(seconds * SR)) * 1e-3).astype(np.float32)


def _stream(samples: np.ndarray, rate: int, config: VADConfig | None = None, pts: float = 0.0, chunk_s: float = 0.02):
    seg = VADSegmenter(config)
    step = max(1, int(rate * chunk_s))
    out: list[SpeechSegment] = []
    for i in range(0, samples.size, step):
        out += seg.feed(AudioChunk(samples[i : i + step], rate, pts + i / rate))
    return out + seg.flush()


def _finals(segments: list[SpeechSegment]) -> list[SpeechSegment]:
    return [s for s in segments if s.final]


@pytest.fixture(scope="module")
def two_utterances(librivox_clips):
    """1 s room tone, clip 0880 (3.0 s), 1.5 s room tone, clip 0930 (3.3 s), 1 s room tone; speech spans."""
    a, b = librivox_clips["0880"].audio(), librivox_clips["0930"].audio()
    parts = [_quiet(1.0, 1), a, _quiet(1.5, 2), b, _quiet(1.0, 3)]
    starts = np.cumsum([0] + [p.size for p in parts]) / SR
    return np.concatenate(parts), [(starts[1], starts[2]), (starts[3], starts[4])]


def test_two_utterances_give_two_segments_on_the_input_clock(two_utterances) -> None:
    signal, spans = two_utterances
    pts0 = 10.0
    finals = _finals(_stream(signal, SR, pts=pts0))
    assert [s.segment_id for s in finals] == [0, 1]
    for seg, (start, end) in zip(finals, spans, strict=True):
        # the segment opens no earlier than its pre-roll before the speech and closes just after it (after the
        # 0.3 s of silence a pause partial already sent, which a final never takes back)
        assert pts0 + start - 0.3 <= seg.pts <= pts0 + start + 0.1
        assert pts0 + end - 0.3 <= seg.audio.end <= pts0 + end + 0.4
        assert seg.audio.sample_rate == SR
        # the timestamp is exact: the segment's samples are the input's samples at that time
        i0 = round((seg.pts - pts0) * SR)
        np.testing.assert_array_equal(seg.audio.samples, signal[i0 : i0 + seg.audio.samples.size])
    assert finals[0].audio.end <= finals[1].pts


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_any_input_rate_gives_the_same_segments(two_utterances, rate: int) -> None:
    signal, _ = two_utterances
    at_rate = resample(signal, SR, rate)
    # the reference hears the same band (8 kHz input has no sound above 4 kHz), fed at 16 kHz directly
    reference = _finals(_stream(resample(at_rate, rate, SR), SR, pts=3.0))
    other = _finals(_stream(at_rate, rate, pts=3.0))
    assert len(other) == len(reference)
    for a, b in zip(reference, other, strict=True):
        assert abs(a.pts - b.pts) <= 0.031 and abs(a.audio.end - b.audio.end) <= 0.031


@pytest.mark.parametrize("frame_ms", [10, 20, 30])
def test_every_frame_size_finds_both_utterances(two_utterances, frame_ms: int) -> None:
    signal, _ = two_utterances
    assert len(_finals(_stream(signal, SR, VADConfig(frame_ms=frame_ms)))) == 2


def test_partials_grow_at_the_interval_and_end_with_the_final(two_utterances) -> None:
    signal, _ = two_utterances
    out = _stream(signal, SR, VADConfig(partial_interval_s=0.5, pause_ms=0))  # pauses: the next test
    for sid in (0, 1):
        mine = [s for s in out if s.segment_id == sid]
        assert [s.final for s in mine] == [False] * (len(mine) - 1) + [True]
        assert len(mine) >= 4  # three seconds of speech at one partial per half second
        for prev, cur in zip(mine, mine[1:], strict=False):
            assert cur.pts == prev.pts
            n = prev.audio.samples.size
            assert cur.audio.samples.size >= n
            np.testing.assert_array_equal(cur.audio.samples[:n], prev.audio.samples)
        growth = np.diff([s.audio.duration for s in mine[:-1]])
        assert np.all(np.abs(growth - 0.51) < 0.011)  # 17 frames of 30 ms: the first whole frames past 0.5 s


def test_a_pause_inside_a_segment_goes_out_at_once_with_its_length(librivox_clips) -> None:
    """Speech, a pause, speech, with a hangover that keeps both in one segment: the VAD sends the segment as soon as
    0.3 s of the pause are heard (not at the next partial interval), saying how much of its end is silence."""
    a, b = librivox_clips["0880"].audio(), librivox_clips["0930"].audio()
    signal = np.concatenate([_quiet(0.5), a, _quiet(0.3, 1), b, _quiet(0.8, 2)])
    gap_start = 0.5 + a.size / SR
    config = VADConfig(hangover_ms=900, pause_ms=300, partial_interval_s=2.0)
    out = _stream(signal, SR, config)
    assert len(_finals(out)) == 1
    at_pause = [s for s in out if not s.final and s.trailing_silence_s >= 0.3]
    assert at_pause, [(s.audio.end, s.trailing_silence_s) for s in out]
    first = at_pause[0]
    voiced_end = first.audio.end - first.trailing_silence_s
    assert gap_start - 0.6 <= voiced_end <= gap_start + 0.1  # the speech ends where the pause starts
    assert first.trailing_silence_s == pytest.approx(0.3, abs=0.031)  # sent the moment the pause is one
    without = _stream(signal, SR, VADConfig(hangover_ms=900, pause_ms=0, partial_interval_s=2.0))
    assert not any(voiced_end < s.audio.end < voiced_end + 0.5 for s in without if not s.final)


def test_hangover_decides_whether_a_short_pause_splits(librivox_clips) -> None:
    a, b = librivox_clips["0880"].audio(), librivox_clips["0930"].audio()
    signal = np.concatenate([_quiet(0.5), a, _quiet(0.3, 1), b, _quiet(0.8, 2)])
    gap_start = 0.5 + a.size / SR
    assert len(_finals(_stream(signal, SR, VADConfig(hangover_ms=600)))) == 1
    split = _finals(_stream(signal, SR, VADConfig(hangover_ms=120, postroll_ms=60)))
    assert len(split) >= 2
    assert any(gap_start - 0.2 <= s.audio.end <= gap_start + 0.3 for s in split)


def test_long_speech_is_cut_at_max_segment_length(librivox_clips) -> None:
    speech = np.concatenate([librivox_clips[k].audio() for k in ("0870", "0920", "0890")])  # 18.5 s, no gaps
    finals = _finals(_stream(speech, SR, VADConfig(max_segment_s=3.0)))
    assert len(finals) >= 6
    assert all(s.audio.duration <= 3.0 + 1e-6 for s in finals)
    for prev, cur in zip(finals, finals[1:], strict=False):
        assert cur.pts >= prev.audio.end - 1e-9  # no audio is sent twice
    covered = sum(s.audio.duration for s in finals)
    assert covered >= 0.9 * speech.size / SR  # and forced cuts lose none of the speech


def test_short_blips_are_dropped_below_min_speech(librivox_clips) -> None:
    clip = librivox_clips["0880"].audio()
    blip = clip[int(0.5 * SR) : int(0.65 * SR)]  # 150 ms of a vowel
    signal = np.concatenate([_quiet(1.0), blip, _quiet(1.0, 1)])
    assert _finals(_stream(signal, SR, VADConfig(min_speech_ms=400))) == []
    kept = _finals(_stream(signal, SR, VADConfig(min_speech_ms=120)))
    assert len(kept) == 1 and kept[0].pts <= 1.0 <= kept[0].audio.end


def test_room_tone_alone_gives_nothing() -> None:
    assert _stream(_quiet(3.0), SR) == []
    assert find_speech(np.zeros(SR * 2, np.float32), SR) == []


def test_a_jump_in_input_timestamps_closes_the_segment_and_restarts_the_clock(librivox_clips) -> None:
    a, b = librivox_clips["0880"].audio(), librivox_clips["0930"].audio()
    seg = VADSegmenter()
    out: list[SpeechSegment] = []
    for clip, pts in ((np.concatenate([_quiet(0.5), a]), 0.0), (np.concatenate([_quiet(0.5, 1), b]), 100.0)):
        for i in range(0, clip.size, 320):
            out += seg.feed(AudioChunk(clip[i : i + 320], SR, pts + i / SR))
    out += seg.flush()
    finals = _finals(out)
    assert len(finals) == 2
    assert finals[0].audio.end <= 0.5 + a.size / SR + 1e-6  # closed when the clock jumped, not later
    assert 100.0 <= finals[1].pts <= 100.6


def test_bad_settings_and_bad_audio_are_refused() -> None:
    for bad in ({"aggressiveness": 4}, {"frame_ms": 25}, {"hangover_ms": -1}, {"max_segment_s": 0.1}):
        with pytest.raises(RtF2fError):
            VADConfig(**bad)
    seg = VADSegmenter()
    with pytest.raises(MediaError, match="mono"):
        seg.feed(AudioChunk(np.zeros((320, 2), np.float32), SR, 0.0))
    with pytest.raises(MediaError, match="NaN"):
        seg.feed(AudioChunk(np.full(320, np.nan, np.float32), SR, 0.0))
    with pytest.raises(MediaError, match="sample rate"):
        seg.feed(AudioChunk(np.zeros(320, np.float32), 0, 0.0))


def test_int16_input_is_scaled_like_float(two_utterances) -> None:
    signal, _ = two_utterances
    pcm = (signal * 32767).astype(np.int16)
    as_float = _finals(_stream(signal, SR))
    as_int = _finals(_stream(pcm, SR))
    assert [(s.pts, s.audio.end) for s in as_int] == [(s.pts, s.audio.end) for s in as_float]


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 4000), min_size=1, max_size=40),
    rate=st.sampled_from([8000, 11025, 22050, 44100, 48000]),
)
def test_streaming_resampler_matches_one_shot_resampling(sizes: list[int], rate: int) -> None:
    signal = np.random.default_rng(len(sizes)).standard_normal(sum(sizes)).astype(np.float32) * 0.3
    resampler = StreamResampler(rate, SR)
    parts, i = [], 0
    for n in sizes:
        parts.append(resampler.push(signal[i : i + n]))
        i += n
    parts.append(resampler.finish())
    streamed = np.concatenate(parts)
    one_shot = resample(signal, rate, SR)
    assert streamed.size == one_shot.size
    np.testing.assert_allclose(streamed, one_shot, atol=1e-5)


async def test_vad_stage_in_a_pipeline_closes_on_end_of_stream(two_utterances) -> None:
    signal, _ = two_utterances
    signal = signal[: int(6.0 * SR)]  # the second utterance is still running when the stream ends

    async def source():
        for i in range(0, signal.size, 960):
            yield AudioChunk(signal[i : i + 960], SR, i / SR)
        yield ControlEvent(ControlKind.END_OF_STREAM, signal.size / SR)

    log = LatencyLog()
    out = [x async for x in Pipeline([VADStage()], log=log).run(source())]
    assert isinstance(out[-1], ControlEvent)
    finals = [s for s in out if isinstance(s, SpeechSegment) and s.final]
    assert [s.segment_id for s in finals] == [0, 1]
    assert finals[1].audio.end == pytest.approx(signal.size / SR, abs=0.031)
    records = log.for_stage("vad")
    assert len(records) == sum(isinstance(s, SpeechSegment) for s in out)
    assert all(r.media_out <= r.media_in + 1e-9 for r in records)  # a segment never ends after its input
