"""Listener feeds driven directly (no WebRTC): the engine runner and the delay-line policy composed in
``TranslatedFeed``, and the typed stats every feed reports. ``fakes.FakeSpeechEngine`` stands in for the engine."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import av
import numpy as np
import pytest
from fakes import Events, FakeEngines, Recorder, wait_until

from rt_f2f.frames import AudioChunk, ControlKind
from rt_f2f.server.feeds.base import FeedStats, PassthroughFeed
from rt_f2f.server.feeds.engine import EngineStats
from rt_f2f.server.feeds.translated import DelayedVideoStats, TranslatedFeed
from rt_f2f.server.limits import MediaSettings

WEBRTC = 48000


def block(i: int, value: float = 0.1) -> AudioChunk:
    return AudioChunk(np.full(960, value, np.float32), WEBRTC, i * 0.02, source="A")


async def feed_for(engines: FakeEngines, settings: MediaSettings | None = None):
    events, audio, video = Events(), Recorder(), Recorder()
    feed = TranslatedFeed("A", "en", "pt", settings or MediaSettings(), events, engines)
    feed.audio.subscribe(audio)
    feed.video.subscribe(video)
    await feed.start()
    await wait_until(lambda: feed.state != "loading" and feed.state != "starting", 2)
    return feed, events, audio, video


async def test_translated_feed_runs_the_engine_on_16khz_blocks_and_publishes_48khz_speech():
    engines = FakeEngines()
    feed, events, audio, video = await feed_for(engines)
    try:
        assert feed.state == "running"
        for i in range(60):  # 1.2 s of speaker audio
            feed.push_audio(block(i), time.monotonic())
            await asyncio.sleep(0)
        await wait_until(lambda: audio.items, 2)
        (engine,) = engines.made
        assert engine.rates == {16000} and len(engine.chunk_sizes) == 1  # fixed-size blocks at the engine rate
        assert audio.items and {c.sample_rate for _, c in audio.items} == {WEBRTC}
        assert [c.text for c in events.captions] == ["olá"]
        stats = feed.snapshot()
        engine_stats, video_stats = stats.parts
        assert isinstance(engine_stats, EngineStats) and isinstance(video_stats, DelayedVideoStats)
        assert engine_stats.speech_out_s == pytest.approx(0.5, abs=0.01)
        assert feed.stats() == {
            "mode": "translated", "state": "running", "delay_s": stats.delay_s,
            "speech_lag_s": engine_stats.speech_lag_s, "speech_out_s": engine_stats.speech_out_s,
            "engine_input_s": round(engine.seconds_in, 2), "engine_input_dropped": 0, "engine_input_stalls": 0, "video_dropped": 0,
        }  # fmt: skip
    finally:
        await feed.close()
    assert feed.state == "closed"


async def test_speaker_audio_that_stops_closes_the_sentence_heard_once_per_stall(caplog):
    """A speaker whose audio stops mid-sentence (a network drop, a browser that stops sending) is not left open
    until they speak again: after ``engine_input_stall_s`` the engine is told the speech ended, once, at the media
    time the audio stopped; the stall is counted and logged in one line."""
    engines = FakeEngines()
    feed, events, audio, video = await feed_for(engines, MediaSettings(engine_input_stall_s=0.3))
    try:
        (engine,) = engines.made
        await asyncio.sleep(0.5)  # before any audio, silence is not a stall
        assert engine.controls == []
        for i in range(30):  # 0.6 s of speech, then nothing
            feed.push_audio(block(i), time.monotonic())
            await asyncio.sleep(0)
        await wait_until(lambda: engine.controls, 2)
        await asyncio.sleep(0.7)  # a stall is reported once, however long it lasts
        ((event, heard),) = engine.controls
        assert event.kind == ControlKind.END_OF_SPEECH and event.detail == {"reason": "input stalled"}
        # where the audio given to the engine ends (the resampler and the 60 ms blocking hold back a little)
        assert event.pts == pytest.approx(heard) and 0.5 <= heard <= 0.6
        assert feed.stats()["engine_input_stalls"] == 1
        (record,) = [r for r in caplog.records if "no audio for" in r.getMessage()]
        assert "\n" not in record.getMessage() and record.exc_info is None
        for i in range(30, 60):  # the speaker is back; a new stall is a new event
            feed.push_audio(block(i), time.monotonic())
            await asyncio.sleep(0)
        await wait_until(lambda: len(engine.controls) == 2, 2)
        (first, _), (second, heard) = engine.controls
        assert second.pts == pytest.approx(heard) and 1.1 <= heard <= 1.2
        assert feed.stats()["engine_input_stalls"] == 2 and feed.stats()["engine_input_s"] == round(heard, 2)
    finally:
        await feed.close()


async def test_a_failed_engine_leaves_listeners_with_the_original_media():
    feed, events, audio, video = await feed_for(FakeEngines(fail="load"))
    try:
        state, detail = events.states[-1]
        assert state == "error" and "no translator for this pair" in detail and feed.state == "error"
        chunk = block(0, 0.5)
        feed.push_audio(chunk, time.monotonic())
        frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
        feed.push_video(frame, time.monotonic())
        await wait_until(lambda: video.items, 1)
        assert [c for _, c in audio.items] == [chunk] and [f for _, f in video.items] == [
            frame
        ]  # the same objects, untouched, at once
        assert feed.stats()["delay_s"] == 0.0
    finally:
        await feed.close()


def test_stats_parts_may_not_reuse_a_name():
    @dataclass(frozen=True)
    class Clash:
        video_dropped: int

    stats = FeedStats("translated", "running", 1.0, (DelayedVideoStats(video_dropped=1), Clash(2)))
    with pytest.raises(ValueError, match="video_dropped"):
        stats.as_dict()


def test_passthrough_reports_no_delay():
    feed = PassthroughFeed("A", "en", "en", MediaSettings(), Events())
    assert feed.stats() == {"mode": "passthrough", "state": "starting", "delay_s": 0.0}
