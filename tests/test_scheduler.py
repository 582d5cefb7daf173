"""The A/V scheduler in virtual time: bounded delay, steady pacing, every frame accounted for, sync in bounds."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rt_f2f.av.clock import ClockDriftEstimator, VideoClockMapper
from rt_f2f.av.realtime import Arrival, RealtimeScheduler, run_virtual
from rt_f2f.av.schedule import (
    AUDIO_EARLY_LIMIT,
    AUDIO_LATE_LIMIT,
    DecisionKind,
    ScheduledAudio,
    ScheduledVideo,
    SchedulerConfig,
)
from rt_f2f.av.scheduler import AVScheduler
from rt_f2f.errors import MediaError, RtF2fError
from rt_f2f.frames import AudioChunk, Clause, SpeechChunk, Translation, VideoFrame, Word

TTS_SR = 16000
IMAGE = np.zeros((2, 2, 3), np.uint8)


def speech(cid: int, start: float, end: float, seconds: float, sr: int = TTS_SR, chunks: int = 1, seed: int = 0):
    """A clause's translated speech as ``chunks`` streamed SpeechChunks (noise: every block of it is non-silent)."""
    audio = (np.random.default_rng(seed + cid).uniform(0.2, 0.5, int(seconds * sr))).astype(np.float32)
    clause = Clause("src", (Word(" a", start, (start + end) / 2), Word(" b", (start + end) / 2, end)), "en", cid)
    translation = Translation(clause, "dst", "pt")
    parts = np.array_split(audio, chunks)
    return [
        SpeechChunk(AudioChunk(part, sr, start), translation, first=i == 0, last=i == chunks - 1)
        for i, part in enumerate(parts)
    ]


def frame(i: int, pts: float) -> VideoFrame:
    return VideoFrame(IMAGE, pts, i)


def split(items):
    audio = [i for i in items if isinstance(i, ScheduledAudio)]
    video = [i for i in items if isinstance(i, ScheduledVideo)]
    return audio, video


def audio_signal(audio: list[ScheduledAudio]) -> tuple[float, np.ndarray]:
    return audio[0].pts, np.concatenate([a.chunk.samples for a in audio])


def cfg(**kw) -> SchedulerConfig:
    return SchedulerConfig(**{"sample_rate": 16000, **kw})


# ---------------------------------------------------------------------------------------------- speech placement


def test_on_time_speech_starts_exactly_at_source_plus_delay_and_is_played_intact() -> None:
    sched = AVScheduler(cfg(), origin_wall=0.0)
    (chunk,) = speech(7, 1.0, 2.0, 1.2)
    items = run_virtual(sched, [Arrival(2.5, chunk)], until=6.0)
    audio, _ = split(items)
    t0, signal = audio_signal(audio)
    at = round((1.0 + 2.0 - t0) * 16000)
    assert np.array_equal(signal[at : at + chunk.audio.samples.size], chunk.audio.samples)
    assert not signal[:at].any() and not signal[at + chunk.audio.samples.size :].any()
    (timing,) = sched.metrics().clauses
    assert timing.start_out == pytest.approx(3.0) and timing.start_delay == pytest.approx(2.0)
    assert [d.kind for d in sched.metrics().decisions] == [DecisionKind.PLACE]
    assert {a.clause_ids for a in audio if a.pts >= 3.0 and a.pts < 4.2} == {(7,)}


def test_late_speech_is_placed_at_the_horizon_and_reported_not_padded() -> None:
    sched = AVScheduler(cfg(), origin_wall=0.0)
    (chunk,) = speech(1, 1.0, 2.0, 1.0)
    run_virtual(sched, [Arrival(0.0, speech(0, 0.0, 0.0, 0.0)[0]), Arrival(3.5, chunk)], until=8.0)
    timing = next(c for c in sched.metrics().clauses if c.clause_id == 1)
    horizon = 3.5 + sched.config.lead + sched.config.audio_lookahead
    # It starts at the audio already committed when it arrived (block-aligned), not a sample later.
    assert horizon - 0.03 < timing.start_out <= horizon
    late = [d for d in sched.metrics().decisions if d.kind == DecisionKind.LATE]
    assert [d.clause_id for d in late] == [1]
    assert late[0].delay == pytest.approx(timing.start_delay)


def test_backlog_is_compressed_within_the_rate_bound_before_anything_is_dropped() -> None:
    sched = AVScheduler(cfg(), origin_wall=0.0)
    # Translations 1.4x longer than their sources, back to back: at 1x the third would end 4.4 s after its source.
    arrivals = [Arrival(0.5 + 2.0 * i, speech(i, 2.0 * i, 2.0 * i + 2.0, 2.8)[0]) for i in range(3)]
    run_virtual(sched, arrivals, until=15.0)
    m = sched.metrics()
    assert m.count(DecisionKind.DROP) == 0
    compress = [d for d in m.decisions if d.kind == DecisionKind.COMPRESS]
    assert compress and all(1.0 < d.rate <= 1.25 for d in compress)
    assert len(m.clauses) == 3
    for c in m.clauses:
        assert c.start_delay <= 4.0 + 1e-6 and c.end_delay <= 4.0 + 0.002
    # Just enough compression: the last clause ends right at the bound, not earlier.
    assert m.clauses[-1].end_delay == pytest.approx(4.0, abs=0.02)


def test_drops_prefer_the_oldest_waiting_clause_over_the_one_that_breaks_the_bound() -> None:
    sched = AVScheduler(cfg(drop_after=4.0), origin_wall=0.0)
    arrivals = [
        Arrival(0.5, speech(0, 0.0, 1.0, 2.5)[0]),  # plays 2.0-4.5
        Arrival(1.5, speech(1, 1.2, 2.0, 0.8)[0]),  # fits after it: 4.5-5.3
        Arrival(2.0, speech(2, 2.0, 2.3, 1.5)[0]),  # after both it would end 4.5 s after its source, even at 1.25x
    ]
    run_virtual(sched, arrivals, until=10.0)
    m = sched.metrics()
    (drop,) = [d for d in m.decisions if d.kind == DecisionKind.DROP]
    assert drop.clause_id == 1 and "oldest waiting" in drop.reason
    assert [c.clause_id for c in m.clauses] == [0, 2]
    assert m.clauses[1].start_out == pytest.approx(4.5)


def test_overload_drops_the_oldest_waiting_clause_and_never_cuts_the_playing_one() -> None:
    sched = AVScheduler(cfg(drop_after=4.0), origin_wall=0.0)
    arrivals = [Arrival(0.5, speech(0, 0.0, 1.0, 3.0)[0])]  # long translation of a short source: plays 2.0-5.0
    # A stalled stage releases three clauses at once, late: they cannot all fit in D_max even at 1.25x.
    arrivals += [Arrival(3.0, speech(i, 0.9 + 0.5 * i, 1.3 + 0.5 * i, 1.2)[0]) for i in (1, 2, 3)]
    run_virtual(sched, arrivals, until=12.0)
    m = sched.metrics()
    drops = [d for d in m.decisions if d.kind == DecisionKind.DROP]
    placed = {c.clause_id: c for c in m.clauses}
    assert drops and drops[0].clause_id == 1  # oldest waiting first
    assert set(placed) | {d.clause_id for d in drops} == {0, 1, 2, 3}
    assert not set(placed) & {d.clause_id for d in drops}
    first = placed[0]
    played = first.end_out - first.start_out - first.underrun
    assert played == pytest.approx(3.0 / first.rate, abs=0.002)  # the playing clause was never cut
    for c in placed.values():
        assert c.start_delay <= 4.0 + 1e-6


def test_by_default_overload_keeps_every_clause_and_the_delay_comes_back_down() -> None:
    sched = AVScheduler(cfg(), origin_wall=0.0)  # no drop_after: nothing said is lost
    arrivals = [Arrival(0.5, speech(0, 0.0, 1.0, 3.0)[0])]  # long translation of a short source: plays 2.0-5.0
    # A stalled stage releases three clauses at once, late: they cannot all fit in D_max even at 1.25x.
    arrivals += [Arrival(3.0, speech(i, 0.9 + 0.5 * i, 1.3 + 0.5 * i, 1.2)[0]) for i in (1, 2, 3)]
    # then the speaker pauses and speaks again: that clause is back within D_max
    arrivals += [Arrival(13.0, speech(4, 12.0, 12.5, 0.6)[0])]
    run_virtual(sched, arrivals, until=20.0)
    m = sched.metrics()
    assert m.count(DecisionKind.DROP) == 0
    placed = {c.clause_id: c for c in m.clauses}
    assert set(placed) == {0, 1, 2, 3, 4}
    over = {d.clause_id for d in m.decisions if d.kind == DecisionKind.OVER_BOUND}
    assert over and over <= {1, 2, 3} and m.summary()["clauses_over_bound"] == len(over)
    for cid in (1, 2, 3):  # played back to back at the highest rate, every sample of them
        c = placed[cid]
        assert c.rate == pytest.approx(1.25, abs=0.01)
        assert c.end_out - c.start_out - c.underrun == pytest.approx(1.2 / c.rate, abs=0.01)
    assert placed[4].start_delay <= 4.0 and placed[4].start_out == pytest.approx(14.0, abs=0.01)


def test_drop_after_must_not_be_below_max_delay() -> None:
    with pytest.raises(RtF2fError):
        cfg(max_delay=4.0, drop_after=3.0)


def test_slow_streaming_stage_underruns_are_measured_and_the_clause_completes() -> None:
    sched = AVScheduler(cfg(), origin_wall=0.0)
    chunks = speech(0, 0.0, 1.0, 2.0, chunks=4)
    # Each 0.5 s chunk arrives 1.2 s after the previous one: the stage is slower than real time.
    run_virtual(sched, [Arrival(0.5 + 1.2 * i, c) for i, c in enumerate(chunks)], until=9.0)
    m = sched.metrics()
    (timing,) = m.clauses
    assert m.count(DecisionKind.UNDERRUN) >= 1
    assert timing.underrun > 0.3
    assert timing.end_out - timing.start_out - timing.underrun == pytest.approx(2.0 / timing.rate, abs=0.002)


def test_chunks_of_a_dropped_clause_are_ignored_and_counted() -> None:
    sched = AVScheduler(cfg(drop_after=4.0), origin_wall=0.0)
    first, second = speech(4, 0.0, 1.0, 1.0, chunks=2)
    sched.push_speech(first, 6.0)  # 6 s after its source: past D_max whatever happens
    sched.push_speech(second, 6.1)
    m = sched.metrics()
    assert [d.kind for d in m.decisions] == [DecisionKind.DROP]
    assert m.chunks_ignored == 1


def test_a_clause_from_the_future_is_refused_instead_of_blocking_the_queue() -> None:
    sched = AVScheduler(cfg(), origin_wall=0.0)
    sched.push_speech(speech(0, 500.0, 501.0, 1.0)[0], 3.0)  # word times 500 s ahead of the clock: broken ASR
    sched.push_speech(speech(1, 1.0, 2.0, 1.0)[0], 3.0)
    run_virtual(sched, [], until=8.0)
    items = run_virtual(sched, [Arrival(8.0, frame(0, 8.0))], until=9.0)
    assert split(items)[1]  # the session goes on
    m = sched.metrics()
    assert [c.clause_id for c in m.clauses] == [1]
    assert [(d.kind, d.clause_id) for d in m.decisions if d.kind == DecisionKind.DROP] == [(DecisionKind.DROP, 0)]


def test_waiting_clauses_are_bounded() -> None:
    sched = AVScheduler(cfg(max_pending_clauses=2, delay=3.0, max_delay=30.0), origin_wall=0.0)
    for i in range(4):
        sched.push_speech(speech(i, 10.0 + i, 10.5 + i, 0.5)[0], 14.0)
    drops = [d for d in sched.metrics().decisions if d.kind == DecisionKind.DROP]
    assert [d.clause_id for d in drops] == [0, 1]
    assert all("waiting" in d.reason for d in drops)


# ---------------------------------------------------------------------------------------------- video


def run_video(arrivals: list[Arrival], until: float, **kw) -> tuple[AVScheduler, list[ScheduledVideo]]:
    sched = AVScheduler(cfg(**kw), origin_wall=0.0)
    _, video = split(run_virtual(sched, arrivals, until=until))
    return sched, video


def check_accounting(sched: AVScheduler, video: list[ScheduledVideo]) -> None:
    m = sched.metrics()
    fresh = [v.frame.index for v in video if not v.repeat]
    assert len(fresh) == len(set(fresh)) == m.video_shown
    assert m.video_received == m.video_shown + sum(m.video_dropped.values()) + m.video_buffered
    assert m.video_buffered == 0


def test_frames_are_shown_at_pts_plus_delay_despite_jitter() -> None:
    rng = np.random.default_rng(1)
    arrivals = [Arrival(i / 25 + 0.05 + rng.exponential(0.05), frame(i, i / 25)) for i in range(250)]
    sched, video = run_video(arrivals, until=11.0)
    check_accounting(sched, video)
    assert [v.frame.index for v in video] == list(range(250))
    assert all(v.pts == pytest.approx(v.frame.pts + 2.0) for v in video)
    assert sched.metrics().video_repeated == 0


def test_gaps_repeat_the_last_frame_and_late_duplicate_frames_are_counted() -> None:
    indices = [i for i in range(100) if not 40 <= i < 50]  # a 0.4 s camera gap
    arrivals = [Arrival(i / 25 + 0.05, frame(i, i / 25)) for i in indices]
    arrivals.append(Arrival(3.5, frame(10, 10 / 25)))  # retransmitted 3 s late: its slot is long gone
    arrivals.append(Arrival(60 / 25 + 0.06, frame(60, 60 / 25)))  # duplicate
    sched, video = run_video(arrivals, until=6.0)
    check_accounting(sched, video)
    m = sched.metrics()
    assert [v.frame.index for v in video if v.repeat and v.frame.index == 39] == [39] * 10
    assert m.video_repeated == 10 + sum(v.frame.index == 99 for v in video if v.repeat)  # the rest: after the end
    assert m.video_dropped == {"late": 1, "duplicate": 1}
    steps = np.diff([v.pts for v in video])
    assert np.allclose(steps, 1 / 25)


def test_out_of_order_frames_are_reordered() -> None:
    order = list(range(50))
    for i in range(0, 48, 6):
        order[i], order[i + 2] = order[i + 2], order[i]
    arrivals = [Arrival(0.1 + k / 25, frame(i, i / 25)) for k, i in enumerate(order)]
    sched, video = run_video(arrivals, until=5.0)
    check_accounting(sched, video)
    assert [v.frame.index for v in video if not v.repeat] == list(range(50))


def test_faster_camera_is_decimated_to_the_output_rate_in_sync() -> None:
    arrivals = [Arrival(i / 50 + 0.03, frame(i, i / 50)) for i in range(200)]
    sched, video = run_video(arrivals, until=6.0)
    check_accounting(sched, video)
    m = sched.metrics()
    fresh = [v for v in video if not v.repeat]
    assert [v.slot for v in fresh] == list(range(101))  # every output slot got its own frame
    assert [v.frame.index for v in fresh[:100]] == list(range(0, 200, 2))  # the one nearest each slot's moment
    assert m.video_shown + m.video_dropped["decimated"] == 200
    assert np.abs(m.av_offsets).max() <= 0.02 + 1e-9


def test_frames_carry_the_audio_span_and_clause_that_play_with_them() -> None:
    arrivals = [Arrival(i / 25 + 0.03, frame(i, i / 25)) for i in range(125)]
    arrivals.append(Arrival(1.5, speech(3, 1.0, 2.0, 1.0)[0]))  # plays at output 3.0-4.0
    sched, video = run_video(arrivals, until=6.0)
    for v in video:
        assert v.audio_span == pytest.approx((v.pts, v.pts + 0.04))
        speaking = 3.0 - 0.04 < v.pts < 4.0
        assert v.clause_ids == ((3,) if speaking else ())


def drifting_session(ppm: float, seconds: float, correct: bool) -> tuple[AVScheduler, list[ScheduledVideo]]:
    """A camera clock ``ppm`` fast against the audio clock, with jitter and a transport stall every 30 s."""
    rng = np.random.default_rng(5)
    arrivals = []
    for i in range(int(seconds * 25)):
        capture = i / 25  # on the audio clock
        arrival = capture + 0.04 + rng.exponential(0.015)
        if capture % 30 > 29:
            arrival = max(arrival, capture - capture % 30 + 29.8)  # stall, then a burst
        arrivals.append(Arrival(arrival, frame(i, capture * (1 + ppm * 1e-6))))
    return run_video(arrivals, until=seconds + 1, correct_drift=correct)


def true_offsets(video: list[ScheduledVideo], delay: float = 2.0) -> np.ndarray:
    return np.array([v.frame.index / 25 + delay - v.pts for v in video if not v.repeat])


def test_clock_drift_is_estimated_and_corrected_within_bt1359() -> None:
    sched, video = drifting_session(1500, 150.0, correct=True)
    check_accounting(sched, video)
    offsets = true_offsets(video)
    assert offsets.min() >= -AUDIO_EARLY_LIMIT and offsets.max() <= AUDIO_LATE_LIMIT
    assert sched.metrics().drift_ppm == pytest.approx(1500, abs=150)
    # Without the correction the same session drifts out of the window: the check above can fail.
    _, uncorrected = drifting_session(1500, 150.0, correct=False)
    assert np.abs(true_offsets(uncorrected)).max() > 0.2


# ---------------------------------------------------------------------------------------------- clock drift
def clock_arrivals(ppm: float, seconds: float, fps: float, seed: int, stall_every: float = 0.0):
    """(pts, arrival) of a source whose clock runs ``ppm`` fast, with one-sided jitter and optional stalls."""
    rng = np.random.default_rng(seed)
    for i in range(int(seconds * fps)):
        wall = i / fps
        arrival = wall + 0.03 + rng.exponential(0.02)
        if stall_every and wall % stall_every > stall_every - 2.0:
            arrival = max(arrival, wall - wall % stall_every + stall_every)  # 2 s stall, then a burst
        yield wall * (1 + ppm * 1e-6), arrival


@pytest.mark.parametrize("ppm", [-1000.0, 300.0, 1500.0])
def test_drift_is_recovered_despite_jitter_and_stalls(ppm: float) -> None:
    est = ClockDriftEstimator()
    for pts, arrival in clock_arrivals(ppm, 120.0, 25.0, seed=1, stall_every=20.0):
        est.add(pts, arrival)
    # slope of (arrival - pts) per pts second = 1 / (1 + drift) - 1
    assert est.slope() == pytest.approx(1 / (1 + ppm * 1e-6) - 1, abs=100e-6)


def test_no_correction_until_the_drift_is_certain() -> None:
    est = ClockDriftEstimator(min_span=10.0)
    rng = np.random.default_rng(2)
    for i in range(int(15 * 25)):  # 15 s, no drift, heavy jitter: a naive fit reads hundreds of ppm
        est.add(i / 25, i / 25 + abs(rng.normal(0, 0.1)))
    assert est.slope() == 0.0
    short = ClockDriftEstimator(min_span=10.0)
    for i in range(5 * 25):
        short.add(i / 25, i / 25)
    assert short.slope() is None


def test_video_is_mapped_onto_the_audio_clock() -> None:
    # The microphone's clock runs 800 ppm slow, the camera's is exact: video pts must shrink onto audio time.
    mapper = VideoClockMapper()
    rng = np.random.default_rng(3)
    mapped = []
    for i in range(int(120 * 50)):
        wall = i / 50
        mapper.note_audio(wall * (1 - 800e-6), wall + 0.01 + rng.exponential(0.005))
        if i % 2 == 0:
            mapped.append((wall, mapper.map(wall, wall + 0.04 + rng.exponential(0.01))))
    assert mapper.drift_ppm == pytest.approx(800, abs=60)
    wall, last = mapped[-1]
    assert last == pytest.approx(wall * (1 - 800e-6), abs=0.01)  # on the audio clock within 10 ms
    assert all(b > a for (_, a), (_, b) in zip(mapped, mapped[1:], strict=False))  # never out of order


def test_correction_is_bounded_and_can_be_switched_off() -> None:
    bounded = VideoClockMapper(max_drift=500e-6)
    off = VideoClockMapper(enabled=False)
    for pts, arrival in clock_arrivals(3000.0, 60.0, 25.0, seed=4):
        bounded.map(pts, arrival)
        assert off.map(pts, arrival) == pts
    assert bounded.drift_ppm == pytest.approx(500, rel=0.01)
    assert abs(bounded.correction) <= 500e-6 * 60 * 1.01


# ---------------------------------------------------------------------------------------------- properties


@dataclass
class Scenario:
    config: SchedulerConfig
    arrivals: list[Arrival]
    capture: dict[int, float]  # frame index -> capture time on the audio clock
    clause_ids: list[int]
    step: float
    until: float

    def __repr__(self) -> str:  # hypothesis prints failing examples: keep it readable
        speech_ = [
            (a.wall, a.item.translation.source.clause_id, a.item.audio.duration)
            for a in self.arrivals
            if not isinstance(a.item, VideoFrame)
        ]
        video = [(round(a.wall, 3), a.item.index, a.item.pts) for a in self.arrivals if isinstance(a.item, VideoFrame)]
        return f"Scenario({self.config}, step={self.step}, speech={speech_}, video={video})"


@st.composite
def scenarios(draw) -> Scenario:
    delay = draw(st.sampled_from([1.0, 2.0, 3.0]))
    max_delay = delay + draw(st.sampled_from([0.5, 1.0, 2.0]))
    config = SchedulerConfig(
        delay=delay,
        max_delay=max_delay,
        drop_after=draw(st.sampled_from([None, max_delay, max_delay + 1.0])),
        sample_rate=draw(st.sampled_from([8000, 16000])),
        fps=draw(st.sampled_from([15.0, 25.0, 30.0])),
        max_rate=draw(st.sampled_from([1.0, 1.25, 1.5])),
    )
    floats = st.floats
    arrivals: list[Arrival] = []
    # Speech: clauses in source order from one sequential stage, 0-2.5 s after each clause ends, sometimes stalled.
    t, ready, ids = draw(floats(0.0, 1.0)), 0.0, []
    stall = draw(st.none() | st.tuples(floats(1.0, 12.0), floats(0.5, 6.0)))
    for cid in range(draw(st.integers(1, 7))):
        source = draw(floats(0.2, 3.0))
        seconds = source * draw(floats(0.5, 2.0))
        chunks = speech(cid, t, t + source, seconds, chunks=draw(st.integers(1, 3)))
        wall = max(t + source + draw(floats(0.0, 2.5)), ready)
        speed = draw(floats(0.5, 4.0))  # the stage's real-time factor while it streams this clause
        for chunk in chunks:
            if stall and stall[0] <= wall < stall[0] + stall[1]:
                wall = stall[0] + stall[1]
            arrivals.append(Arrival(wall, chunk))
            wall += chunk.audio.duration / speed
        ready, ids = wall, ids + [cid]
        t += source + draw(floats(0.0, 1.0))
    # Video: a camera at its own rate and drifting clock, jittered transport, bursts, gaps, reordering.
    in_fps = draw(st.sampled_from([15.0, 24.0, 25.0, 30.0]))
    drift = draw(floats(-300, 300)) * 1e-6
    transit, jitter = draw(floats(0.0, 0.3)), draw(floats(0.0, 0.1))
    gap = draw(st.none() | st.tuples(floats(0.0, t), floats(0.1, 2.0)))
    burst = draw(st.none() | st.tuples(floats(0.0, t), floats(0.1, 3.0)))  # long ones make frames late
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    capture: dict[int, float] = {}
    video: list[Arrival] = []
    for i in range(int((t + 1.0) * in_fps)):
        c = i / in_fps
        if gap and gap[0] <= c < gap[0] + gap[1]:
            continue
        wall = c + transit + abs(rng.normal(0.0, jitter))
        if burst and burst[0] <= wall < burst[0] + burst[1]:
            wall = burst[0] + burst[1]
        capture[i] = c
        video.append(Arrival(wall, frame(i, c * (1 + drift))))
    if draw(st.booleans()):
        for k in range(0, len(video) - 2, 7):
            video[k], video[k + 2] = (
                Arrival(video[k + 2].wall, video[k].item),
                Arrival(video[k].wall, video[k + 2].item),
            )
    step = draw(st.sampled_from([0.005, 0.01, 0.02, 0.05]))
    return Scenario(config, arrivals + video, capture, ids, step, max(a.wall for a in arrivals + video) + 0.5)


def replay(s: Scenario) -> tuple[AVScheduler, list, dict[int, float]]:
    """Like ``run_virtual``, also noting the audio horizon when each clause's first chunk arrived."""
    sched = AVScheduler(s.config, origin_wall=0.0)
    events = sorted(s.arrivals, key=lambda a: a.wall)
    horizon: dict[int, float] = {}
    items, now, i = [], 0.0, 0
    while now <= s.until:
        while i < len(events) and events[i].wall <= now:
            e = events[i]
            if isinstance(e.item, VideoFrame):
                sched.push_video(e.item, e.wall)
            else:
                committed = math.floor((e.wall + s.config.lead + s.config.audio_lookahead) * s.config.sample_rate)
                cid = e.item.translation.source.clause_id
                horizon.setdefault(cid, max(sched.audio_horizon, committed / s.config.sample_rate))
                sched.push_speech(e.item, e.wall)
            i += 1
        items += sched.pull(now)
        now += s.step
    return sched, items + sched.flush(), horizon


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios())
def test_scheduler_properties(s: Scenario) -> None:
    sched, items, horizon = replay(s)
    cfg_, m = s.config, sched.metrics()
    audio, video = split(items)
    block = round(cfg_.block * cfg_.sample_rate) / cfg_.sample_rate

    # Output timestamps: audio blocks back to back from output pts D; video on a steady frame grid.
    pts = np.array([a.pts for a in audio])
    assert pts[0] == pytest.approx(cfg_.delay)
    assert np.allclose(np.diff(pts), block, atol=1e-9)
    assert all(a.chunk.samples.size == round(block * cfg_.sample_rate) for a in audio)
    if video:
        assert np.allclose(np.diff([v.pts for v in video]), 1 / cfg_.fps, atol=1e-9)

    # Every input frame is shown once or counted as dropped.
    check_accounting(sched, video)

    # A/V offset (against the frames' true capture moments, drift included) inside ITU-R BT.1359.
    offsets = np.array([s.capture[v.frame.index] + cfg_.delay - v.pts for v in video if not v.repeat])
    if offsets.size:
        assert offsets.min() >= -AUDIO_EARLY_LIMIT and offsets.max() <= AUDIO_LATE_LIMIT

    # Every clause is either placed or dropped, with a recorded decision.
    placed = {c.clause_id: c for c in m.clauses}
    dropped = {d.clause_id for d in m.decisions if d.kind == DecisionKind.DROP}
    assert set(placed) | dropped == set(s.clause_ids) and not set(placed) & dropped
    assert {d.clause_id for d in m.decisions if d.kind == DecisionKind.PLACE} == set(placed)

    prev_end = -math.inf
    tol = 1.0 / cfg_.sample_rate + 1e-9
    over = {d.clause_id for d in m.decisions if d.kind == DecisionKind.OVER_BOUND}
    if cfg_.drop_after is None:
        # Nothing said is lost by default: only the untrusted-input bounds may drop (none are hit here).
        assert not dropped
    for c in sorted(placed.values(), key=lambda c: c.start_out):
        # Bounded delay (the explicit drop bound; without one, passing D_max is recorded), never ahead of the
        # target, never later than its inputs allowed (no made-up silence).
        if cfg_.drop_after is not None:
            assert c.start_delay <= cfg_.drop_after + 1e-6
        if c.start_delay > cfg_.max_delay + 1e-6:
            assert c.clause_id in over
        assert c.start_out >= c.source_start + cfg_.delay - tol
        assert c.start_out <= max(c.source_start + cfg_.delay, prev_end, horizon[c.clause_id]) + tol
        assert c.start_out >= prev_end - tol  # no overlap
        assert 1.0 <= c.rate <= cfg_.max_rate + 1e-9
        if c.complete_at_start and c.underrun == 0 and c.clause_id not in over:
            assert c.end_delay <= cfg_.max_delay + 0.002
        prev_end = c.end_out
    assert all(d.rate <= cfg_.max_rate + 1e-9 for d in m.decisions)
    # Compression is only used when a clause would otherwise have broken the bound.
    if cfg_.max_rate == 1.0:
        assert m.count(DecisionKind.COMPRESS) == 0


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0.0, 1.0), st.floats(0.2, 3.0), st.floats(0.3, 1.0), st.integers(1, 3)), max_size=8),
    st.sampled_from([1.0, 2.0, 3.0]),
)
def test_speech_that_keeps_up_is_placed_exactly_on_time(clauses: list, delay: float) -> None:
    """Stages that deliver before source + D, translations no longer than their source: nothing to fix."""
    config = cfg(delay=delay, max_delay=delay + 1.0)
    margin = config.lead + config.audio_lookahead + 0.05  # what is committed ahead of playout, and a pull step
    arrivals, t = [], 0.5
    for cid, (gap, fraction, ratio, n) in enumerate(clauses):
        t += gap
        source = max(0.05, fraction / 3.0 * (delay - margin))  # short enough to be heard, translated, in time
        chunks = speech(cid, t, t + source, source * ratio, chunks=n)
        spread = (t + delay - margin - (t + source)) * np.linspace(0, 1, n)  # streamed between its end and deadline
        arrivals += [Arrival(t + source + dt, c) for dt, c in zip(spread, chunks, strict=True)]
        t += source
    sched = AVScheduler(config, origin_wall=0.0)
    run_virtual(sched, sorted(arrivals, key=lambda a: a.wall), until=t + delay + 2)
    m = sched.metrics()
    assert {d.kind for d in m.decisions} <= {DecisionKind.PLACE}
    assert len(m.clauses) == len(clauses)
    for c in m.clauses:
        assert c.start_out == pytest.approx(c.source_start + delay, abs=1 / 16000)


def test_nothing_is_compressed_or_dropped_when_stages_keep_up() -> None:
    arrivals = []
    for cid in range(20):
        start = cid * 2.0
        arrivals.append(Arrival(start + 1.6, speech(cid, start, start + 1.5, 1.6)[0]))
    sched = AVScheduler(cfg(), origin_wall=0.0)
    run_virtual(sched, arrivals, until=45.0)
    m = sched.metrics()
    assert len(m.clauses) == 20 and {d.kind for d in m.decisions} == {DecisionKind.PLACE}
    assert all(c.start_delay == pytest.approx(2.0) for c in m.clauses)


# ---------------------------------------------------------------------------------------------- API edges


def test_origin_is_inferred_from_the_first_frame() -> None:
    sched = AVScheduler(cfg())
    assert sched.pull(100.0) == []
    sched.push_video(frame(0, 5.0), 1000.0)
    assert sched.origin_wall == pytest.approx(995.0)
    _, video = split(sched.pull(1000.0 + 2.0))
    assert video[0].pts == pytest.approx(7.0) and not video[0].repeat
    assert all(v.repeat for v in video[1:])  # up to the lead: the camera has sent nothing newer


def test_bad_input_and_configuration_are_refused() -> None:
    with pytest.raises(RtF2fError, match="max_delay"):
        SchedulerConfig(delay=3.0, max_delay=2.0)
    with pytest.raises(RtF2fError, match="max_rate"):
        SchedulerConfig(max_rate=3.0)
    with pytest.raises(RtF2fError, match="lead"):
        SchedulerConfig(delay=0.2, lead=0.1, audio_lookahead=0.2)
    sched = AVScheduler(cfg(), origin_wall=0.0)
    (chunk,) = speech(0, 0.0, 1.0, 0.5)
    stereo = SpeechChunk(AudioChunk(np.zeros((2, 100), np.float32), 16000, 0.0), chunk.translation, True, True)
    with pytest.raises(MediaError, match="mono"):
        sched.push_speech(stereo, 1.0)
    with pytest.raises(MediaError, match="non-finite"):
        sched.push_video(frame(0, float("nan")), 1.0)
    with pytest.raises(MediaError, match="SpeechChunk"):
        sched.push_speech(chunk.audio, 1.0)


async def test_realtime_wrapper_paces_on_its_clock() -> None:
    clock = [100.0]

    async def sleep(seconds: float) -> None:
        clock[0] += seconds

    rt = RealtimeScheduler(AVScheduler(cfg(delay=1.0)), clock=lambda: clock[0], sleep=sleep, tick=0.02)
    items: list = []
    pushed, closed = 0, False
    async for item in rt.stream():
        items.append(item)
        now = clock[0] - 100.0
        while pushed < 50 and pushed / 25 <= now:
            rt.push_video(frame(pushed, pushed / 25))
            pushed += 1
        if pushed == 50 and now > 1.0:
            (chunk,) = speech(0, 0.5, 1.0, 0.5)
            rt.push_speech(chunk)
            pushed += 1
        # Nothing is handed out before its time: at most lead (+ lookahead for audio) ahead of the clock.
        assert item.pts <= now + 0.1 + 0.2 + 1e-9 or closed
        if now > 4.0 and not closed:
            rt.close()
            closed = True
    audio, video = split(items)
    assert [v.frame.index for v in video if not v.repeat] == list(range(50))
    assert np.allclose(np.diff([a.pts for a in audio]), 0.02)
    assert [c.clause_id for c in rt.scheduler.metrics().clauses] == [0]
