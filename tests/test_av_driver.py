"""The live A/V driver on its own: ``FrameSink`` (scheduled items -> audio at once, frames re-mouthed in order on
one worker thread) and ``LiveFaceToFace`` (the scheduler paced on a clock, feeding a sink), with
``fakes.FakeLipSyncSession`` instead of Wav2Lip and, for the driver, an injected virtual clock as in
test_scheduler.py: no models, no wall-clock assertions.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest
from fakes import FakeLipSyncSession, mouthed

from rt_f2f.av.config import FaceToFaceConfig, FaceToFaceResult, build_scheduler
from rt_f2f.av.live import FrameSink, LiveFaceToFace
from rt_f2f.av.realtime import RealtimeScheduler
from rt_f2f.av.schedule import ScheduledAudio, ScheduledVideo
from rt_f2f.frames import AudioChunk, Clause, SpeechChunk, Translation, VideoFrame, Word

RATE = 16000
FPS = 25.0


def picture(i: int) -> np.ndarray:
    """A 16x16 picture that says which input frame it is."""
    return np.full((16, 16, 3), i % 200, np.uint8)


def scheduled_frame(i: int, pts: float | None = None) -> ScheduledVideo:
    pts = i / FPS if pts is None else pts
    return ScheduledVideo(VideoFrame(picture(i), pts, i), pts, i, pts, False, (pts, pts + 1 / FPS), (), 0.0)


def scheduled_audio(pts: float, seconds: float = 0.02) -> ScheduledAudio:
    return ScheduledAudio(AudioChunk(np.full(int(seconds * RATE), 0.1, np.float32), RATE, pts), ())


def lipsync_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("rt-f2f-lipsync")]


class Out:
    """Where a sink hands its output, with the order audio and video came in."""

    def __init__(self) -> None:
        self.frames: list[VideoFrame] = []
        self.audio: list[AudioChunk] = []
        self.order: list[str] = []

    def video(self, frame: VideoFrame) -> None:
        self.frames.append(frame)
        self.order.append("v")

    def sound(self, chunk: AudioChunk) -> None:
        self.audio.append(chunk)
        self.order.append("a")


def sink(
    session: FakeLipSyncSession | None,
    out: Out,
    origin: float | None = None,
    build: Callable[[], FakeLipSyncSession] | None = None,
    **config,
) -> tuple[FrameSink, FaceToFaceResult]:
    """A sink on ``session`` (built already: handed over as ``lambda: session``) or on what ``build`` makes."""
    result = FaceToFaceResult()
    cfg = FaceToFaceConfig(fps=FPS, **config)
    made = build if build is not None or session is None else (lambda: session)
    return FrameSink(result, out.video, made, cfg, origin_wall=lambda: origin, on_audio=out.sound), result


# -- FrameSink ---------------------------------------------------------------------------------------------------


async def test_frames_come_out_remouthed_in_order_and_audio_never_waits_for_them():
    session, out = FakeLipSyncSession(batch_size=4), Out()
    frame_sink, result = sink(session, out)
    for i in range(10):
        await frame_sink.consume(scheduled_audio(i / FPS, 1 / FPS))
        await frame_sink.consume(scheduled_frame(i))
    assert len(out.audio) == 10  # every audio block out at once, while frames wait for their batch
    await frame_sink.close()
    assert [f.index for f in out.frames] == list(range(10))  # the last, partial batch flushed at close
    assert all(np.array_equal(f.image, mouthed(picture(f.index))) for f in out.frames)
    assert [f.pts for f in out.frames] == [i / FPS for i in range(10)]
    assert out.order.index("v") > out.order.index("a")
    assert session.stats.batches == 3 and [pts for pts, _, _ in session.stats.audio] == [i / FPS for i in range(10)]
    assert session.threads and all(name.startswith("rt-f2f-lipsync") for name in session.threads)
    assert result.frames_written == 10 and result.lipsync_rendered == 10
    assert frame_sink.counts() == {"rendered": 10, "skipped_late": 0, "without_face": 0}
    assert lipsync_threads() == []


async def test_a_session_factory_runs_on_the_worker_and_faceless_frames_are_counted():
    made: list[str] = []
    session = FakeLipSyncSession(batch_size=2, faceless=frozenset({1}))

    def factory() -> FakeLipSyncSession:
        made.append(threading.current_thread().name)
        return session

    out = Out()
    frame_sink, result = sink(None, out, build=factory)
    for i in range(4):
        await frame_sink.consume(scheduled_frame(i))
    await frame_sink.close()
    assert len(made) == 1 and made[0].startswith("rt-f2f-lipsync")
    assert [f.index for f in out.frames] == [0, 1, 2, 3]
    assert np.array_equal(out.frames[1].image, picture(1))  # no face: the frame as it was
    assert result.lipsync_without_face == 1 and result.lipsync_rendered == 3


async def test_without_lipsync_frames_pass_straight_through():
    out = Out()
    frame_sink, result = sink(None, out)
    for i in range(3):
        await frame_sink.consume(scheduled_frame(i))
    await frame_sink.close()
    assert [f.index for f in out.frames] == [0, 1, 2] and result.frames_written == 3
    assert all(np.array_equal(f.image, picture(f.index)) for f in out.frames)


async def test_a_failed_batch_is_raised_once_and_stops_nothing_silently():
    session, out = FakeLipSyncSession(batch_size=2, fail_at_batch=1), Out()
    frame_sink, _ = sink(session, out)
    await frame_sink.consume(scheduled_frame(0))
    await frame_sink.consume(scheduled_frame(1))  # the batch fails on the worker
    with pytest.raises(RuntimeError, match="batch 1 failed"):
        for _ in range(100):
            await asyncio.sleep(0.01)
            await frame_sink.consume(scheduled_frame(2))
    await frame_sink.close(flush=False)  # abandoning after the error raises nothing more
    assert lipsync_threads() == []


async def test_a_failure_found_at_close_is_raised_there():
    session, out = FakeLipSyncSession(batch_size=8, fail_at_batch=1), Out()
    frame_sink, _ = sink(session, out)
    await frame_sink.consume(scheduled_frame(0))
    with pytest.raises(RuntimeError, match="batch 1 failed"):
        await frame_sink.close()  # the flush renders the partial batch, which fails


@pytest.mark.parametrize("late", [True, False])
async def test_live_frames_predicted_to_miss_their_playout_skip_the_worker_in_order(late):
    """Live (an origin on the wall clock): a frame whose render would land after its playout goes out with its
    original mouth, counted, and in its turn; a frame with time to spare is re-mouthed."""
    session, out = FakeLipSyncSession(batch_size=2), Out()
    origin = time.monotonic() + (-100.0 if late else 100.0)
    frame_sink, result = sink(session, out, origin=origin, max_render_lag=0.5)
    await frame_sink.ready()
    for i in range(6):
        await frame_sink.consume(scheduled_frame(i))
        while i == 1 and not late and len(out.frames) < 2:  # until one batch has run, what one costs is unknown
            await asyncio.sleep(0.005)
    await frame_sink.close()
    assert [f.index for f in out.frames] == list(range(6))
    remouthed = [np.array_equal(f.image, mouthed(picture(f.index))) for f in out.frames]
    if late:
        assert not any(remouthed) and result.lipsync_skipped_behind == 6 and session.stats.frames_in == 0
    else:
        assert all(remouthed) and result.lipsync_skipped_behind == 0
    assert len(result.render_lag) == 6  # each frame's readiness against its playout is recorded


async def test_a_slow_first_batch_does_not_stop_rendering_for_good():
    """One slow batch (a first call, a burst of load) teaches a cost that predicts every later frame late; nothing
    is rendered, so nothing would correct it. Once that cost is ``render_cost_stale_s`` old, a batch is rendered
    to measure it again, and frames with time to spare are re-mouthed again (an event worker rendered 20 of 268
    frames for its whole run after its first batch took 1.4 s)."""
    session, out = FakeLipSyncSession(batch_size=2, batch_seconds=(0.6,)), Out()
    origin = [time.monotonic() + 100.0]
    frame_sink, result = sink(
        session, out, origin=None, max_render_lag=0.0, provisional_frames=True, render_cost_stale_s=0.05
    )
    frame_sink.origin_wall = lambda: origin[0]
    await frame_sink.ready()

    async def push(i: int) -> None:
        await frame_sink.consume(scheduled_frame(i))

    async def rendered(count: int) -> None:
        for _ in range(2000):  # 10 s at most: without a new measure frames 4 and 5 never reach the session
            if session.stats.frames_out >= count:
                return
            await asyncio.sleep(0.005)

    for i in (0, 1):  # plenty of time: rendered, and the batch takes 0.6 s
        await push(i)
    await rendered(2)
    origin[0] = time.monotonic() - scheduled_frame(2).pts + 0.3  # from now on frames have 0.3 s of lead
    for i in (2, 3):  # a fresh 0.6 s cost says these cannot make it
        await push(i)
    assert result.lipsync_skipped_behind == 2 and session.stats.frames_in == 2
    await asyncio.sleep(0.1)  # the cost is now older than render_cost_stale_s: the next batch measures it again
    for i in (4, 5):
        await push(i)
    await rendered(4)
    for i in (6, 7):  # the new cost (next to nothing) leaves time to spare
        await push(i)
    await frame_sink.close()
    assert session.stats.frames_in == 6 and result.lipsync_skipped_behind == 2
    again = {f.index for f in out.frames if np.array_equal(f.image, mouthed(picture(f.index)))}
    assert again == {0, 1, 4, 5, 6, 7}


async def test_provisional_frames_go_out_at_once_and_again_remouthed():
    session, out = FakeLipSyncSession(batch_size=3), Out()
    frame_sink, _ = sink(session, out, origin=time.monotonic() + 100.0, provisional_frames=True)
    await frame_sink.ready()
    for i in range(3):
        await frame_sink.consume(scheduled_frame(i))
    await frame_sink.close()
    first, second = out.frames[:3], out.frames[3:]
    assert [f.index for f in first] == [0, 1, 2] and all(np.array_equal(f.image, picture(f.index)) for f in first)
    assert [f.index for f in second] == [0, 1, 2]
    assert all(np.array_equal(f.image, mouthed(picture(f.index))) for f in second)


async def test_live_frames_pass_with_their_own_mouth_until_the_session_is_built():
    """A session built on the worker (a detector loading, say) holds nothing up: frames scheduled before it exists
    go out as they are, counted as skipped; once ``ready`` returns, frames are re-mouthed."""
    release = threading.Event()
    session = FakeLipSyncSession(batch_size=2)

    def slow_build() -> FakeLipSyncSession:
        release.wait(10)
        return session

    out = Out()
    frame_sink, result = sink(None, out, origin=time.monotonic() + 100.0, build=slow_build)
    for i in range(2):
        await frame_sink.consume(scheduled_frame(i))
    assert [f.index for f in out.frames] == [0, 1] and result.lipsync_skipped_behind == 2
    assert all(np.array_equal(f.image, picture(f.index)) for f in out.frames)
    release.set()
    await frame_sink.ready()
    for i in range(2, 4):
        await frame_sink.consume(scheduled_frame(i))
    await frame_sink.close()
    assert [f.index for f in out.frames] == [0, 1, 2, 3] and session.stats.frames_in == 2
    assert all(np.array_equal(f.image, mouthed(picture(f.index))) for f in out.frames[2:])
    assert frame_sink.counts() == {"rendered": 2, "skipped_late": 2, "without_face": 0}


async def test_a_session_that_cannot_be_built_is_reported_not_ignored():
    def broken() -> FakeLipSyncSession:
        raise RuntimeError("no face detector")

    out = Out()
    frame_sink, _ = sink(None, out, build=broken)
    with pytest.raises(RuntimeError, match="no face detector"):
        await frame_sink.ready()
    with pytest.raises(RuntimeError, match="no face detector"):  # a frame handed to it fails in turn
        await frame_sink.consume(scheduled_frame(0))
        for _ in range(100):
            await asyncio.sleep(0.01)
            await frame_sink.consume(scheduled_frame(1))
    await frame_sink.close(flush=False)
    assert lipsync_threads() == []


# -- LiveFaceToFace ----------------------------------------------------------------------------------------------


class VirtualClock:
    """Time that moves only when the driver sleeps; each sleep also lets the loop (and the worker) run."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0.001)


def clause_speech(clause_id: int, start: float, seconds: float) -> SpeechChunk:
    clause = Clause("hi", (Word(" hi", start, start + 0.4),), "en", clause_id)
    audio = AudioChunk(np.full(int(seconds * RATE), 0.3, np.float32), RATE, start)
    return SpeechChunk(audio, Translation(clause, "oi", "pt"), True, True)


def driver(session, out: Out, clock: VirtualClock, delay: float = 1.0) -> LiveFaceToFace:
    config = FaceToFaceConfig(delay=delay, max_delay=4.0, fps=FPS, realtime=True, lipsync_batch=session.batch_size)
    scheduler = build_scheduler(config, session.max_latency_s, RATE, clock())
    result = FaceToFaceResult()
    frame_sink = FrameSink(
        result, out.video, lambda: session, config, on_audio=out.sound
    )  # no wall origin: no skipping
    live = LiveFaceToFace(scheduler, frame_sink)
    live.realtime = RealtimeScheduler(scheduler, clock=clock, sleep=clock.sleep, tick=0.02)
    return live


async def play(live: LiveFaceToFace, clock: VirtualClock, seconds: float, speech_at: float, end: bool) -> None:
    """Push camera frames and the speaker's audio clock as virtual time passes, one clause of speech at
    ``speech_at``; then end the input (``end``) or abort."""
    task = asyncio.ensure_future(live.run())
    start, pushed, spoke = clock(), 0, False
    while (now := clock() - start) < seconds:
        while pushed / FPS <= now:
            live.push_video(VideoFrame(picture(pushed), pushed / FPS, pushed))
            live.note_audio(pushed / FPS, start + pushed / FPS)
            pushed += 1
        if not spoke and now >= speech_at:
            live.push_speech(clause_speech(0, 0.2, 0.6))
            spoke = True
        await asyncio.sleep(0.002)
    if end:
        live.end_input()
        await asyncio.wait_for(task, 30)
    else:
        await live.abort()
        assert task.done()


async def test_the_driver_places_speech_and_remouthed_frames_on_one_output_clock():
    clock, session, out = VirtualClock(), FakeLipSyncSession(batch_size=4), Out()
    live = driver(session, out, clock, delay=1.0)
    await play(live, clock, seconds=3.0, speech_at=0.3, end=True)
    assert live.origin == 100.0 and lipsync_threads() == []
    fresh = [f for f in out.frames if f.index is not None]
    assert [f.pts for f in fresh] == sorted(f.pts for f in fresh)  # output in order
    assert np.allclose(np.diff([f.pts for f in fresh]), 1 / FPS)  # every 25 fps slot, none missing
    assert all(np.array_equal(f.image, mouthed(picture(f.index))) for f in fresh)
    # frame i (captured at i/25) shows at output pts i/25 + D on the output clock
    assert all(abs(f.pts - (f.index / FPS + 1.0)) < 1 / FPS + 1e-6 for f in fresh)
    pts = np.array([c.pts for c in out.audio])
    assert np.allclose(np.diff(pts), 0.02)  # one continuous output audio track
    loud = pts[[float(np.abs(c.samples).max()) > 0.2 for c in out.audio]]
    assert loud.size and abs(loud[0] - (0.2 + 1.0)) <= 0.02 + 1e-6  # the clause starts at source + D
    assert loud[-1] - loud[0] == pytest.approx(0.6 - 0.02, abs=0.021)  # all of its 0.6 s played, none dropped


async def test_abort_stops_the_driver_without_playing_out():
    clock, session, out = VirtualClock(), FakeLipSyncSession(batch_size=8), Out()
    live = driver(session, out, clock, delay=1.0)
    await play(live, clock, seconds=2.0, speech_at=10.0, end=False)
    assert lipsync_threads() == []
    held_back = session.stats.frames_in - session.stats.frames_out
    assert held_back > 0  # frames waiting for a batch were abandoned, not flushed
    assert len(out.frames) == session.stats.frames_out
