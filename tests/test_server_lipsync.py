"""Lip-synced translated video in calls: ``LipSyncFeed`` driven directly in real time, its server wiring, and one
call through the real server with aiortc clients.

The generator has random weights in the released checkpoint format (``lipsync_fixtures``): its mouths say nothing
about lip-sync quality, but every frame it renders differs from the input where it pastes, which makes "this frame
was re-mouthed, and only around the mouth" measurable. The face is a real photo (``media_fixtures.face_photo``), so
the real face tracker finds it. ``fakes.FakeSpeechEngine`` stands in for the speech engine: it answers every second of
input with a clause and half a second of loud speech-like sound (``chirp_engines``), optionally late.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from audio_checks import dominant_frequency, tone
from fakes import Events, FakeEngines, FakeSpeechEngine, Recorder
from lipsync_fixtures import shared_checkpoint, write_random_checkpoint
from media_fixtures import face_photo
from test_server_api import loopback_ice, open_room, running_server  # noqa: F401  (loopback_ice: a fixture)

from rt_f2f.av.schedule import AUDIO_EARLY_LIMIT, AUDIO_LATE_LIMIT
from rt_f2f.cli import main
from rt_f2f.errors import ModelMissingError, RtF2fError
from rt_f2f.frames import AudioChunk
from rt_f2f.server.app import ServerConfig
from rt_f2f.server.client import ArrayAudioTrack, PatternVideoTrack, RoomClient
from rt_f2f.server.feeds.base import PassthroughFeed
from rt_f2f.server.feeds.factory import default_feed_factory
from rt_f2f.server.feeds.lipsync import LipSyncFeed
from rt_f2f.server.feeds.lipsync_model import CallLipSyncConfig, LipSyncModel, lipsync_for_server
from rt_f2f.server.limits import MediaSettings

WEBRTC = 48000
SIZE = 256
INPUT_FPS = 30.0  # a camera rate other than the output's 25 fps
SPEECH_S = 0.5
LOUD = 0.05  # RMS above this is translated speech; the scheduler's silence is exact zeros
BLOCK = 0.02  # the scheduler's audio block: published audio chunks start on this grid (their sizes vary a little)


# -- fixtures ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model() -> LipSyncModel:
    return lipsync_for_server(shared_checkpoint())


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return face_photo(SIZE)


@pytest.fixture(scope="module")
def face_box(photo: np.ndarray) -> tuple[int, int, int, int]:
    """The padded box the stream pastes into, as its own tracker finds it, widened by a few pixels of slack."""
    from rt_f2f.lipsync.detectors import MediaPipeDetector
    from rt_f2f.lipsync.faces import FaceTracker

    box = FaceTracker(MediaPipeDetector()).update(photo, 0.0)
    assert box is not None, "mediapipe finds no face in the test photo"
    x1, y1, x2, y2 = box.ints()
    return max(0, x1 - 6), max(0, y1 - 6), min(SIZE, x2 + 6), min(SIZE, y2 + 6)


def coded(photo: np.ndarray, index: int) -> np.ndarray:
    """The photo with the frame number written into its top-left corner, far outside the face."""
    image = photo.copy()
    image[:12, :12] = index // 256
    image[:12, 12:24] = index % 256
    return image


def decode(image: np.ndarray) -> int:
    return int(image[:12, :12].mean().round()) * 256 + int(image[:12, 12:24].mean().round())


def pitch(clause_id: int) -> float:
    """Each clause's speech has its own pitch, so what a listener hears can be traced to its clause."""
    return 200.0 + 100.0 * (clause_id % 10)


def chirp(freq: float, seconds: float = SPEECH_S, rate: int = 24000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.4 * np.sin(2 * np.pi * freq * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)


def chirp_engines(**options) -> FakeEngines:
    """Fake engines whose clause k is heard as half a second of loud sound at ``pitch(k)``."""
    return FakeEngines(word_gap_s=0.2, speech=lambda k, heard, rate: (chirp(pitch(k)), 24000), **options)


@dataclass
class Run:
    feed: LipSyncFeed
    engine: FakeSpeechEngine
    events: Events
    audio: Recorder
    video: Recorder
    start: float  # wall time of session time 0 (audio pts 0)
    frame_wall: dict[int, float]  # input frame number -> wall time it was pushed


def make_feed(
    model: LipSyncModel, **engine_kw
) -> tuple[LipSyncFeed, list[FakeSpeechEngine], Events, Recorder, Recorder]:
    factory = chirp_engines(**engine_kw)
    engines = factory.made
    events, audio, video = Events(), Recorder(), Recorder()
    feed = LipSyncFeed("A", "en", "pt", MediaSettings(), events, factory, model)
    feed.audio.subscribe(audio)
    feed.video.subscribe(video)
    return feed, engines, events, audio, video


async def drive(model: LipSyncModel, photo: np.ndarray, seconds: float, **engine_kw) -> Run:
    """Push ``seconds`` of silence-level mic audio (20 ms blocks) and numbered camera frames in real time; keep
    pushing until the feed has published everything due by then, then close it."""
    feed, engines, events, audio, video = make_feed(model, **engine_kw)
    await feed.start()
    frame_wall: dict[int, float] = {}
    start = time.monotonic()
    blocks = frames = 0
    quiet = np.full(960, 1e-3, np.float32)
    while (now := time.monotonic() - start) < seconds:
        while (blocks + 1) * 0.02 <= now:  # a block arrives once it has been recorded
            feed.push_audio(AudioChunk(quiet, WEBRTC, blocks * 0.02, source="A"), time.monotonic())
            blocks += 1
        while frames / INPUT_FPS <= now:
            frame = av.VideoFrame.from_ndarray(coded(photo, frames), format="rgb24")
            frame.pts, frame.time_base = round(frames / INPUT_FPS * 90000), Fraction(1, 90000)
            frame_wall[frames] = time.monotonic()
            feed.push_video(frame, frame_wall[frames])
            frames += 1
        await asyncio.sleep(0.005)
    return Run(feed, engines[0] if engines else None, events, audio, video, start, frame_wall)


def rgb(frame: av.VideoFrame) -> np.ndarray:
    return frame.to_ndarray(format="rgb24")


def audio_timeline(run: Run) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Published audio blocks: (wall published, output pts, RMS)."""
    walls, pts, rms = [], [], []
    for wall, chunk in run.audio.items:
        walls.append(wall)
        pts.append(chunk.pts)
        rms.append(float(np.sqrt(np.mean(chunk.samples**2))) if chunk.samples.size else 0.0)
    return np.array(walls), np.array(pts), np.array(rms)


def heard_clauses(run: Run) -> list[tuple[int, float]]:
    """(clause id, wall time its speech started being published) for every stretch of loud audio, by its pitch."""
    walls, _, rms = audio_timeline(run)
    samples = [chunk.samples for _, chunk in run.audio.items]
    loud = np.concatenate([[False], rms > LOUD, [False]])
    starts, ends = np.nonzero(loud[1:] & ~loud[:-1])[0], np.nonzero(~loud[1:] & loud[:-1])[0]
    heard = []
    for a, b in zip(starts, ends, strict=True):
        freq = dominant_frequency(np.concatenate(samples[a:b]), WEBRTC)
        heard.append((int(round((freq - pitch(0)) / 100.0)), float(walls[a])))
    return heard


def threads_named(prefix: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(prefix)]


async def no_other_tasks() -> list[str]:
    await asyncio.sleep(0.05)
    return [t.get_name() for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]


# -- the feed ----------------------------------------------------------------------------------------------------


async def test_lipsynced_frames_change_only_the_mouth_and_leave_on_one_clock_with_their_audio(model, photo, face_box):
    config = model.config
    run = await drive(model, photo, seconds=7.0)
    stats = run.feed.stats()
    await run.feed.close()
    assert await no_other_tasks() == []
    assert threads_named("rt-f2f-lipsync") == []  # the feed's worker thread is gone

    frames = [(wall, f) for wall, f in run.video.items]
    assert len(frames) >= 3 * config.fps, "about D seconds less than the run's 7 s of video came out"
    steps = np.diff([float(f.pts * f.time_base) for _, f in frames]) * config.fps
    assert np.all(steps > 0.5) and np.allclose(steps, np.round(steps), atol=1e-3)  # increasing, on the 25 fps grid
    x1, y1, x2, y2 = face_box
    outside = np.ones((SIZE, SIZE), bool)
    outside[y1:y2, x1:x2] = False
    changed, delays = [], []
    for wall, frame in frames:
        image = rgb(frame)
        assert image.shape == (SIZE, SIZE, 3)
        index = decode(image)
        delays.append(wall - run.frame_wall[index])
        diff = np.any(image != coded(photo, index), axis=-1)
        assert not diff[outside].any(), "pixels outside the face box changed"
        if diff.any():
            rows = np.nonzero(diff)[0]
            assert rows.min() >= y1 + 0.2 * (y2 - y1), "only the lower face (mouth, cheeks, chin) is re-rendered"
            changed.append(float(frame.pts * frame.time_base))
    assert changed, "no frame was lip-synced"
    # the picture waits D (a frame period of slot rounding either way), never more than D_max
    assert config.delay_s - 0.1 < np.median(delays) < config.delay_s + 0.1
    assert max(delays) <= config.max_delay_s

    walls, apts, rms = audio_timeline(run)
    assert np.allclose(np.diff(apts), BLOCK)
    # one output clock: the audio of a frame's moment is published with the frame (BT.1359: -45 ms .. +125 ms)
    offsets = []
    for wall, frame in frames:
        p = float(frame.pts * frame.time_base)  # 90 kHz ticks: within 6 us of the scheduler's pts
        i = np.searchsorted(apts, p + 1e-4, side="right") - 1
        assert i >= 0 and p < apts[i] + BLOCK + 1e-4, "a frame went out with no audio for its moment"
        offsets.append(walls[i] + (p - apts[i]) - wall)
    assert -AUDIO_EARLY_LIMIT <= min(offsets) and max(offsets) <= AUDIO_LATE_LIMIT, (min(offsets), max(offsets))
    # lip-synced frames shown while translated speech plays
    loud = rms > LOUD
    speaking = [p for p in changed if loud[np.searchsorted(apts, p + 1e-4, side="right") - 1]]
    assert speaking, "no re-mouthed frame was shown while translated speech played"

    # each clause is heard once, in order, D to D_max after its words were spoken
    heard = heard_clauses(run)
    assert [k for k, _ in heard] == list(range(len(heard))) and len(heard) >= 4
    for k, onset in heard:
        assert config.delay_s - 0.05 <= onset - (run.start + run.engine.clauses[k].pts) <= config.max_delay_s
    assert any(c.kind == "translation" and c.text == "olá" for c in run.events.captions)
    assert ("running", "") in run.events.states

    assert stats["lipsync"] is True and stats["max_delay_s"] == config.max_delay_s
    assert stats["lipsync_rendered"] >= len(changed) - 8  # rendered, or still being rendered when stats were taken
    assert stats["lipsync_without_face"] == 0
    assert stats["delay_s"] == config.delay_s and stats["speech_lag_s"] is not None


async def test_speech_that_would_pass_max_delay_is_dropped(model, photo):
    """Clause 1's speech comes 2.5 s late, which would put it past D_max (3 s here): it is never played; the
    clauses around it, on time, are."""
    tight = replace(model, config=CallLipSyncConfig(delay_s=1.0, max_delay_s=3.0))
    run = await drive(tight, photo, seconds=6.0, lags=(0.0, 2.5))
    await run.feed.close()
    heard = heard_clauses(run)
    assert {0, 2, 3} <= {k for k, _ in heard} and 1 not in {k for k, _ in heard}
    assert any(c.text == "olá" and c.start == run.engine.clauses[1].pts for c in run.events.captions)
    for k, onset in heard:
        assert onset - (run.start + run.engine.clauses[k].pts) <= 3.0


class SlowBackend:
    """The generator, 1.5 s slower per batch: a CPU far too busy for lip-sync to keep up."""

    def __init__(self, backend) -> None:
        self.backend = backend

    def infer(self, mel: np.ndarray, faces: np.ndarray) -> np.ndarray:
        time.sleep(1.5)
        return self.backend.infer(mel, faces)


async def test_a_slow_generator_costs_mouths_never_audio_or_frames(model, photo):
    run = await drive(replace(model, backend=SlowBackend(model.backend)), photo, seconds=6.0)
    stats = run.feed.stats()
    await run.feed.close()
    walls, apts, _ = audio_timeline(run)
    assert np.allclose(np.diff(apts), BLOCK) and np.diff(walls).max() < 0.1  # audio kept flowing, on time
    steps = np.diff([float(f.pts * f.time_base) for _, f in run.video.items]) * model.config.fps
    assert len(steps) >= 3 * model.config.fps and np.allclose(steps, 1.0)  # every 25 fps slot, none missing
    assert stats["lipsync_skipped_late"] > stats["lipsync_rendered"] and stats["video_dropped"] == 0


@pytest.mark.parametrize("fail", ["load", "run"])
async def test_engine_failure_falls_back_to_the_original_media(model, photo, fail):
    run = await drive(model, photo, seconds=2.5, fail=fail)
    try:
        states = [s for s, _ in run.events.states]
        assert states[-1] == "error" and "loading" in states
        detail = run.events.states[-1][1]
        assert ("no translator for this pair" if fail == "load" else "RuntimeError") in detail
        deadline = time.monotonic() + 5.0
        while threads_named("rt-f2f-lipsync") and time.monotonic() < deadline:  # a batch may be finishing
            await asyncio.sleep(0.05)
        assert threads_named("rt-f2f-lipsync") == []  # lip-sync stopped with the engine
        # from now on listeners get exactly what the speaker sent: the same audio block, the same frame
        chunk = AudioChunk(np.full(960, 0.5, np.float32), WEBRTC, 10.0, source="A")
        frame = av.VideoFrame.from_ndarray(photo, format="rgb24")
        run.feed.push_audio(chunk, time.monotonic())
        run.feed.push_video(frame, time.monotonic())
        assert run.audio.items[-1][1] is chunk and run.video.items[-1][1] is frame
        assert run.feed.stats()["delay_s"] == 0.0
    finally:
        await run.feed.close()
    assert await no_other_tasks() == []


def test_factory_picks_the_lipsync_feed_for_translated_listeners(model):
    make = default_feed_factory(chirp_engines(), lipsync=model)
    assert isinstance(make("A", "en", "pt", MediaSettings(), Events()), LipSyncFeed)
    assert isinstance(make("A", "en", "en", MediaSettings(), Events()), PassthroughFeed)


# -- server start-up ---------------------------------------------------------------------------------------------


def test_serve_finds_the_stores_checkpoint_or_says_how_to_enable_lipsync(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("RT_F2F_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RT_F2F_MODEL_WAV2LIP", raising=False)
    with caplog.at_level("WARNING"):
        assert lipsync_for_server(None) is None
    (line,) = [r.getMessage() for r in caplog.records if "lip-sync" in r.getMessage()]
    assert "--checkpoint_path" in line and "rt-f2f models pull wav2lip" in line
    with pytest.raises(RtF2fError, match="no Wav2Lip checkpoint"):
        lipsync_for_server(None, "torch")
    monkeypatch.setenv("RT_F2F_MODEL_WAV2LIP", str(tmp_path / "nowhere.pth"))
    with pytest.raises(ModelMissingError, match="RT_F2F_MODEL_WAV2LIP"):
        lipsync_for_server(None)
    checkpoint = write_random_checkpoint(tmp_path / "wav2lip.pth", seed=1)
    monkeypatch.setenv("RT_F2F_MODEL_WAV2LIP", str(checkpoint))
    found = lipsync_for_server(None, "torch")
    assert found.checkpoint == checkpoint and found.backend_name == "torch"


def test_serve_refuses_a_bad_checkpoint_at_start(tmp_path: Path, capsys):
    garbage = tmp_path / "wav2lip.pth"
    garbage.write_bytes(b"not a checkpoint" * 100)
    for path in (garbage, tmp_path / "missing.pth"):
        assert main(["serve", "--port", "1", "--checkpoint_path", str(path)]) == 2
        err = capsys.readouterr().err
        assert str(path) in err and "hint:" in err


# -- through the real server -------------------------------------------------------------------------------------


class FaceTrack(PatternVideoTrack):
    """A camera showing the photo, paced and timestamped like the synthetic camera."""

    def __init__(self, image: np.ndarray, fps: float = 25.0) -> None:
        super().__init__(image.shape[1], image.shape[0], fps)
        self.image = image

    async def recv(self) -> av.VideoFrame:
        timing = await super().recv()  # only its timestamps are kept
        frame = av.VideoFrame.from_ndarray(self.image, format="rgb24")
        frame.pts, frame.time_base = timing.pts, timing.time_base
        return frame


class PixelClient(RoomClient):
    """A ``RoomClient`` that also keeps the pixels of the last frames it received per slot."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.pixels: dict[int, list[np.ndarray]] = {}

    def _recorder(self, index: int, kind: str):
        record = super()._recorder(index, kind)
        if kind != "video":
            return record
        kept = self.pixels.setdefault(index, [])

        def on_video(frame: av.VideoFrame) -> None:
            record(frame)
            kept.append(frame.to_ndarray(format="rgb24"))
            del kept[:-200]

        return on_video


@pytest.mark.slow
async def test_listener_receives_frames_that_differ_from_the_speakers_only_at_the_mouth(model, photo, face_box):
    factory = default_feed_factory(chirp_engines(), lipsync=model)
    async with running_server(ServerConfig(web_dir=None), factory) as (app, base):
        room = await open_room(base)
        a = RoomClient(
            base, room["id"], room["token"], name="A", speak="en", hear="pt", slots=1,
            audio=ArrayAudioTrack(tone(1000.0, 2.0), 16000, loop=True), video=FaceTrack(photo),
        )  # fmt: skip
        b = PixelClient(base, room["id"], room["token"], name="B", speak="pt", hear="pt", slots=1)
        try:
            await b.join()
            await a.join()
            await b.wait_for(lambda: len(b.pixels.get(0, [])) >= 150, 40)
            stats = [m for m in b.messages if m["type"] == "stats"][-1]["speakers"][a.participant["id"]]
        finally:
            await asyncio.gather(a.close(), b.close())
    assert stats["lipsync"] is True and stats["lipsync_rendered"] > 0
    x1, y1, x2, y2 = face_box
    outside = np.ones((SIZE, SIZE), bool)
    outside[y1:y2, x1:x2] = False
    mouth = np.zeros((SIZE, SIZE), bool)
    mouth[y1 + (y2 - y1) // 2 : y2 - (y2 - y1) // 8, x1 + (x2 - x1) // 4 : x2 - (x2 - x1) // 4] = True
    received = b.pixels[0]
    assert all(image.shape == (SIZE, SIZE, 3) for image in received)
    diffs = [np.abs(image.astype(np.int16) - photo).mean(axis=-1) for image in received]
    away = np.array([d[outside].mean() for d in diffs])
    at_mouth = np.array([d[mouth].mean() for d in diffs])
    assert away.max() < 6.0, "outside the face the listener sees the speaker's picture (up to codec noise)"
    remouthed = at_mouth > 3 * away.max()
    assert remouthed.sum() >= 5, f"the mouth was not re-rendered in the frames the listener got: {at_mouth.round(1)}"
