"""``rt-f2f event start --input FILE``: the recorded talk's own pictures on its sound's clock (fast, no Janus).

The timeline (``video_timeline.looped_frames``) is checked frame by frame without pacing; the published track
(``FileVideoTrack``) for a fraction of a second in real time. Timing asserts only what pacing guarantees (a frame
is never sent before its time), never how late a loaded machine sends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path

import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError
from fakes import wait_until
from test_event import netns  # noqa: F401  (the slow test's network namespace)

from rt_f2f.errors import MediaError
from rt_f2f.event import speaker_file
from rt_f2f.event.speaker_file import fit_factor, open_speaker_file
from rt_f2f.server.client import ArrayAudioTrack, PatternVideoTrack
from rt_f2f.server.timebase import VIDEO_CLOCK
from rt_f2f.video import write_video
from rt_f2f.video_timeline import looped_frames

ROOT = Path(__file__).resolve().parents[1]
TALK = ROOT / "examples" / "en_sample.wav"
FPS = 25
RATE = 16000


def numbered_video(path: Path, frames: int, audio_s: float, size: tuple[int, int] = (64, 48)) -> Path:
    """Frame ``i`` is grey level ``20 + 10 * i``, so each picture can be told apart after the codec; a tone."""
    w, h = size
    images = [np.full((h, w, 3), 20 + 10 * i, np.uint8) for i in range(frames)]
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(audio_s * RATE)) / RATE).astype(np.float32)
    write_video(path, images, float(FPS), audio=tone, audio_rate=RATE, crf=0)
    return path


def number_of(image: np.ndarray) -> int:
    return int(round((float(image.mean()) - 20) / 10))


def test_the_timeline_holds_the_first_frame_for_the_lead_in_the_last_to_the_period_and_loops(tmp_path: Path) -> None:
    path = numbered_video(tmp_path / "talk.mp4", frames=10, audio_s=0.6)  # 0.4 s of picture for 0.6 s of sound
    period, lead_in = 0.8, 0.2
    frames = looped_frames(path, period, FPS, lead_in=lead_in)
    got = [next(frames) for _ in range(60)]  # three loops of period * fps = 20 frames
    frames.close()
    one = [0] * 5 + list(range(10)) + [9] * 5  # lead-in: the first picture; the end: the last one, held
    assert [number_of(f.image) for f in got] == one * 3
    assert [f.loop for f in got] == [0] * 20 + [1] * 20 + [2] * 20
    assert [f.pts for f in got] == pytest.approx([k / FPS for k in range(60)], abs=1e-6)  # no seam in time
    assert {f.image.shape for f in got} == {(48, 64, 3)}


def test_a_picture_longer_than_its_sound_is_cut_and_one_pass_ends(tmp_path: Path) -> None:
    path = numbered_video(tmp_path / "talk.mp4", frames=10, audio_s=0.4)
    got = list(looped_frames(path, 0.3, FPS, loop=False))  # the sound (the period) is 0.3 s: 7.5 frames
    assert [number_of(f.image) for f in got] == list(range(7))
    assert [f.pts for f in got] == pytest.approx([k / FPS for k in range(7)], abs=1e-6)


def test_pictures_above_the_call_servers_cap_are_scaled_by_a_whole_factor(tmp_path: Path) -> None:
    assert fit_factor(1280, 720) == 1 and fit_factor(640, 480) == 1
    assert fit_factor(1281, 720) == 2 and fit_factor(1920, 1080) == 2 and fit_factor(3840, 2160) == 3
    assert fit_factor(8192, 8192) == 9  # 910 x 910 fits 1280 x 720's area; 1024 x 1024 does not
    big = open_speaker_file(str(numbered_video(tmp_path / "big.mp4", 3, 0.5, (1300, 740))), loop=True)
    assert big.resize_factor == 2 and big.size == (650, 370)
    assert next(looped_frames(big.path, 1.0, FPS, resize_factor=2)).image.shape == (370, 650, 3)
    small = open_speaker_file(str(numbered_video(tmp_path / "small.mp4", 3, 0.5, (65, 49))), loop=True)
    assert small.resize_factor == 1 and small.size == (66, 50)  # odd sides padded, as every encoder here needs


async def test_the_speaker_track_sends_the_files_frames_on_the_sounds_clock_and_loops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from camera_fixtures import write_still_talk

    monkeypatch.setattr(speaker_file, "LEAD_IN_S", 0.2)
    talk = open_speaker_file(str(write_still_talk(tmp_path / "face.mp4", seconds=0.6)), loop=True)
    assert talk.picture is not None and talk.size == (256, 256) and talk.picture.fps == FPS
    sound_out, picture_out = talk.tracks()
    audio, video = talk.audio, talk.video
    period = audio.samples.size / 48000
    assert period == pytest.approx(0.8, abs=0.1)  # 0.2 s lead-in + 0.6 s of AAC (its padding aside)

    async def play_sound() -> None:
        with contextlib.suppress(MediaStreamError):  # until the re-publish below stops this outlet
            while True:
                await sound_out.recv()

    sound = asyncio.create_task(play_sound())
    sent: list[tuple[float, int, tuple[int, int]]] = []
    try:
        while len(sent) < 2 * FPS:  # two seconds: past the second loop's start
            frame = await picture_out.recv()
            sent.append((time.monotonic(), frame.pts, (frame.width, frame.height)))
        # a re-publish (Janus restarted; aiortc stopped the old sender's tracks) goes on where the clock is
        sound_out.stop()
        picture_out.stop()
        _, again = talk.tracks()
        assert video.readyState == "live" and (await again.recv()).pts > sent[-1][1]
    finally:
        sound.cancel()
        talk.close()
    assert video.readyState == audio.readyState == "ended"
    assert audio.started is not None
    assert {size for _, _, size in sent} == {(256, 256)}
    pts = np.array([p for _, p, _ in sent])
    assert (np.diff(pts) > 0).all() and abs(np.median(np.diff(pts)) - VIDEO_CLOCK / FPS) <= 1, np.diff(pts)
    # never early: each frame leaves when the sound's clock reaches it (late ones were skipped, and counted)
    assert all(wall >= audio.started + p / VIDEO_CLOCK - 0.005 for wall, p, _ in sent)
    assert video.loops >= 1 and pts[-1] / VIDEO_CLOCK > period
    assert video.frames_sent == len(sent) + 1 and video.decode_error is None
    stats = talk.stats()
    assert stats["video"] and stats["frames_sent"] == len(sent) + 1 and stats["frames_late"] == video.frames_late


async def test_frames_behind_the_sound_are_skipped_and_counted_and_a_finished_talk_holds_its_last_picture(
    tmp_path: Path,
) -> None:
    path = numbered_video(tmp_path / "talk.mp4", frames=10, audio_s=0.4)
    talk = open_speaker_file(str(path), loop=False)
    talk.tracks()
    audio, video = talk.audio, talk.video
    end = audio.samples.size / 48000  # lead-in + 0.4 s
    audio.started = time.monotonic() - (end + 0.5)  # the sound is half a second past the end already
    try:
        first = await video.recv()  # the first frame goes out at once, then the picture catches up
        caught_up = await video.recv()
    finally:
        talk.close()
    assert first.pts == 0
    assert caught_up.pts / VIDEO_CLOCK > end and video.frames_late >= (end + 0.2) * FPS
    assert number_of(caught_up.to_ndarray(format="rgb24")) == 9  # the last picture, held
    assert talk.stats()["frames_late"] == video.frames_late


async def test_a_file_that_breaks_mid_talk_holds_its_last_picture_and_says_why() -> None:
    from rt_f2f.event.speaker_file import FileVideoTrack
    from rt_f2f.video_timeline import ThreadedFrames, TimedFrame

    def breaks_after_two():  # what looped_frames does when read_frames meets a corrupt stretch
        for k in range(2):
            yield TimedFrame(0, k / FPS, np.full((48, 64, 3), 20 + 10 * k, np.uint8))
        raise MediaError("talk.mp4: corrupt video after 2 frames (Invalid data)", "re-export the file")

    clock = ArrayAudioTrack(np.zeros(4800, np.float32), 48000)
    video = FileVideoTrack(ThreadedFrames(breaks_after_two()), clock, FPS)
    frames = [await video.recv() for _ in range(4)]
    video.stop()
    assert [number_of(f.to_ndarray(format="rgb24")) for f in frames] == [0, 1, 1, 1]
    assert np.diff([f.pts for f in frames]).tolist() == [VIDEO_CLOCK // FPS] * 3
    assert "corrupt video after 2 frames" in video.decode_error


def test_a_sound_only_file_keeps_the_pattern_video() -> None:
    talk = open_speaker_file(str(TALK), loop=True)
    assert talk.picture is None and talk.stats()["video"] is False
    audio, pattern = talk.tracks()
    assert isinstance(audio.inner, ArrayAudioTrack) and isinstance(pattern, PatternVideoTrack)
    again = talk.tracks()
    assert again[0].inner is audio.inner and again[1] is not pattern  # the pattern is made afresh for every publish
    talk.close()


def bad_inputs(tmp_path: Path) -> list[tuple[Path, str]]:
    garbage = tmp_path / "talk.mp4"
    garbage.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"not a video" * 500)
    mute = tmp_path / "mute.mp4"
    write_video(mute, [np.zeros((48, 64, 3), np.uint8)] * 5, float(FPS))
    return [(tmp_path / "missing.mp4", "no such file"), (garbage, "not a readable media file"),
            (mute, "has no audio stream")]  # fmt: skip


async def test_a_bad_input_is_one_clear_error_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    from rt_f2f.event.controller import EventConfig, EventController

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the controller's folder for Janus's config
    for path, why in bad_inputs(tmp_path):
        with pytest.raises(MediaError, match=why) as info:
            open_speaker_file(str(path), loop=False)
        assert str(path) in str(info.value) and info.value.hint
        controller = EventController(EventConfig(source="en", targets=("pt",), input_file=str(path)))
        with pytest.raises(MediaError, match=why):
            await controller.start()
        assert controller.janus is None and controller.sfu is None  # refused before Janus or Ray started


def test_rt_f2f_event_start_with_a_bad_input_says_so_in_one_line(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    from rt_f2f.cli import main

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    _, (garbage, _), _ = bad_inputs(tmp_path)
    assert main(["event", "start", "--source", "en", "--targets", "pt", "--input", str(garbage)]) == 2
    err = capsys.readouterr().err
    assert "not a readable media file" in err and str(garbage) in err and "hint:" in err


# -- slow, inside a network namespace (root) -----------------------------------------------------------------------
@contextlib.asynccontextmanager
async def event_playing_a_face(tmp_path: Path, seconds: float, **config: object):
    """A started event whose speaker is ``--input`` a still face talking (looped), pt offered; yields the controller
    and ``watch(mountpoint)`` (a video-only watcher on a session of its own); everything is closed after."""
    from camera_fixtures import write_still_talk

    from rt_f2f.event.controller import EventConfig, EventController
    from rt_f2f.event.janus_client import JanusSession
    from rt_f2f.event.netns import INTERFACE
    from rt_f2f.event.placement import shutdown
    from rt_f2f.event.rtc import Watcher

    face = write_still_talk(tmp_path / "talk.mp4", seconds=seconds)
    controller = EventController(EventConfig(source="en", targets=("pt",), ice_interfaces=(INTERFACE,),
                                             input_file=str(face), input_loop=True, **config))  # fmt: skip
    peers: list[JanusSession | Watcher] = []

    async def watch(mountpoint: int) -> Watcher:
        session = await JanusSession.create(controller.janus_url)
        watcher = Watcher(session, keep_audio=False)
        peers.extend([session, watcher])
        await watcher.watch(mountpoint)
        return watcher

    try:
        await controller.start()
        yield controller, watch
    finally:
        for peer in reversed(peers):  # each watcher before its session
            await peer.close()
        await controller.stop()
        shutdown()


@pytest.mark.slow
@pytest.mark.usefixtures("netns")
async def test_an_event_playing_a_face_video_with_a_checkpoint_re_mouths_the_speakers_face(tmp_path: Path) -> None:
    """``--input`` a still face talking, a random-weight Wav2Lip checkpoint, pt pinned: the original carries the
    file's own pictures at their size, and the pt translator finds the face in them and renders mouths for its
    speech (random weights: counts only, never quality)."""
    from lipsync_fixtures import shared_checkpoint

    checkpoint = str(shared_checkpoint())
    async with event_playing_a_face(tmp_path, 11.6, pin=True, checkpoint_path=checkpoint) as (controller, watch):
        watcher = await watch(controller.join("original")["mountpoint"])
        pt = controller.languages["pt"]
        await wait_until(lambda: (pt.health.get("lipsync") or {}).get("lipsync_rendered", 0) > 0, 400, 0.25)
        status = controller.status()
    print(json.dumps({"input": status["input"], "lipsync": status["languages"]["pt"]["lipsync"]}))
    assert watcher.reception.video_size == (256, 256) and watcher.reception.video_frames > 0
    assert status["input"]["video"] and status["input"]["frames_sent"] > 0 and status["input"]["decode_error"] is None
    lipsync = status["languages"]["pt"]["lipsync"]
    assert lipsync["lipsync_rendered"] > 0 and lipsync["lipsync_rendered"] <= lipsync["frames_in"], lipsync


@pytest.mark.slow
@pytest.mark.usefixtures("netns")
async def test_after_a_janus_crash_the_files_pictures_resume_on_the_sounds_clock(tmp_path: Path) -> None:
    """SIGKILL Janus: the re-published speaker sends the same file tracks, which pick up where the sound's clock is
    (pictures that fell behind are skipped and counted, not sent in a burst), and the old peer connection no longer
    pulls them (two senders on one track would each get every other frame)."""

    async with event_playing_a_face(tmp_path, 3.2) as (controller, watch):
        mountpoint = controller.join("original")["mountpoint"]
        await asyncio.sleep(1.0)
        before, old = controller.status()["input"], controller.speaker
        controller.janus.proc.kill()
        await wait_until(lambda: controller.janus_recovered == 1 and controller.original.forwarders, 60, 0.25)
        watcher = await watch(mountpoint)
        await wait_until(lambda: watcher.reception.video_frames >= 25, 30, 0.25)
        after, played = controller.status()["input"], controller._speaker_file
        behind = time.monotonic() - played.audio.started - played.video._sent_pts
    print(json.dumps({"before": before, "after": after, "behind_s": behind}))
    assert old.pc.connectionState == "closed" and controller.speaker is not old
    assert watcher.reception.video_size == (256, 256) and after["frames_sent"] > before["frames_sent"] > 0
    assert -0.01 < behind < 1.0  # the picture is where the sound's clock is (a loaded machine sends a bit late)
