"""The streaming lip-sync API: order, audio lookahead, latency-bounded batching, faceless pass-through, the stage."""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field

import numpy as np
import pytest
from fakes import FakeLipSyncSession
from lipsync_fixtures import shared_checkpoint
from media_fixtures import face_photo, speech

from rt_f2f.frames import AudioChunk, ControlEvent, ControlKind, VideoFrame
from rt_f2f.lipsync.detectors import MediaPipeDetector
from rt_f2f.lipsync.facebox import FaceBox
from rt_f2f.lipsync.faces import FaceTracker
from rt_f2f.lipsync.mel import mel_chunks, melspectrogram
from rt_f2f.lipsync.session import LipSyncSession
from rt_f2f.lipsync.stream import LOOKAHEAD_S, LipSyncStage, LipSyncStream
from rt_f2f.stage import Pipeline

FPS = 25.0
CHUNK = 320  # 20 ms of 16 kHz audio


class RecordingBackend:
    """Echoes the reference face back and remembers every batch (sizes and mel windows)."""

    name = "recording"
    max_batch = 1000

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.mels: list[np.ndarray] = []

    def infer(self, mel: np.ndarray, faces: np.ndarray) -> np.ndarray:
        assert mel.shape[1:] == (1, 80, 16) and faces.shape[1:] == (6, 96, 96)
        self.batches.append(len(mel))
        self.mels.extend(mel[:, 0])
        return faces[:, 3:6].copy()


class FixedTracker:
    """A face at a fixed box, except on the frames listed as faceless."""

    box = FaceBox(16, 8, 48, 56)

    def __init__(self, faceless: frozenset[int] = frozenset()) -> None:
        self.faceless = faceless
        self.calls = 0

    def update(self, image: np.ndarray, t: float | None = None) -> FaceBox | None:
        index = self.calls
        self.calls += 1
        return None if index in self.faceless else self.box


@dataclass
class Emission:
    frame: VideoFrame
    now: float  # media time of the event that released it (inf: flush)
    audio_end: float


@dataclass
class Run:
    stream: LipSyncStream
    backend: RecordingBackend
    inputs: list[VideoFrame] = field(default_factory=list)
    out: list[Emission] = field(default_factory=list)


def frames(n: int, size: int = 64) -> list[VideoFrame]:
    rng = np.random.default_rng(0)
    return [VideoFrame(rng.integers(0, 255, (size, size, 3), np.uint8), pts=i / FPS, index=i) for i in range(n)]


def run_live(
    n_frames: int,
    audio: np.ndarray | None,
    batch_size: int = 4,
    max_latency_s: float = 0.4,
    faceless: frozenset[int] = frozenset(),
    audio_delay_s: float = 0.0,
    **kwargs,
) -> Run:
    """Feed frames and 20 ms audio chunks in the order they would arrive in real time, then flush."""
    backend = RecordingBackend()
    stream = LipSyncStream(
        backend, fps=FPS, batch_size=batch_size, max_latency_s=max_latency_s, tracker=FixedTracker(faceless), **kwargs
    )
    run = Run(stream, backend, frames(n_frames))
    events = [(f.pts, 1, f) for f in run.inputs]  # a frame is available at its pts
    if audio is not None:
        for k in range(0, audio.size, CHUNK):
            chunk = AudioChunk(audio[k : k + CHUNK], 16000, k / 16000)
            events.append((chunk.end + audio_delay_s, 0, chunk))  # a chunk is available once it has been recorded
    for now, _, item in sorted(events, key=lambda e: (e[0], e[1])):
        if isinstance(item, VideoFrame):
            done = stream.push_video(item)
        else:
            done = stream.push_audio(item.samples, item.pts, item.sample_rate)
        run.out += [Emission(f, now, stream.audio_end) for f in done]
    run.out += [Emission(f, math.inf, stream.audio_end) for f in stream.flush()]
    return run


@pytest.fixture(scope="module")
def audio_2s() -> np.ndarray:
    return speech(2.0)


def test_frames_come_out_once_in_order_after_their_audio(audio_2s):
    run = run_live(50, audio_2s, batch_size=4, max_latency_s=0.4)
    assert [e.frame.index for e in run.out] == list(range(50))
    live = [e for e in run.out if math.isfinite(e.now)]
    assert len(live) >= 40  # all but the tail (whose audio runs past the end) went out before the flush
    for e in live:
        assert e.audio_end >= e.frame.pts + LOOKAHEAD_S - 1e-9  # 16 mel steps (+ STFT half window) were there
    assert run.stream.stats.frames_in == run.stream.stats.frames_out == 50
    assert run.stream.pending == 0


def test_latency_is_bounded_and_frames_are_batched(audio_2s):
    run = run_live(50, audio_2s, batch_size=8, max_latency_s=0.4)
    live = [e for e in run.out if math.isfinite(e.now)]
    lateness = [e.now - e.frame.pts for e in live]
    assert max(lateness) <= 0.4 + 1e-6
    assert min(lateness) >= LOOKAHEAD_S - 1e-9
    sizes = run.backend.batches
    assert max(sizes) <= 8 and sum(sizes) == 50
    assert np.mean(sizes) > 2  # waiting up to the latency bound does gather frames into batches


def test_a_generous_latency_fills_whole_batches(audio_2s):
    run = run_live(40, audio_2s, batch_size=8, max_latency_s=10.0)
    assert run.backend.batches == [8] * 5
    assert [e.frame.index for e in run.out] == list(range(40))


def test_faceless_frames_pass_through_unchanged_in_order_and_are_counted(audio_2s):
    faceless = frozenset({0, 7, 8, 9, 30})
    run = run_live(40, audio_2s, batch_size=4, faceless=faceless)
    assert [e.frame.index for e in run.out] == list(range(40))
    for e in run.out:
        if e.frame.index in faceless:
            assert e.frame is run.inputs[e.frame.index]  # the very frame that came in
    assert run.stream.stats.frames_without_face == len(faceless)
    assert sum(run.backend.batches) == 40 - len(faceless)  # the generator never saw them


def test_composited_frames_differ_only_inside_the_face_box(audio_2s):
    run = run_live(10, audio_2s)
    box = FixedTracker().box
    for e in run.out:
        original = run.inputs[e.frame.index].image
        outside = np.ones(original.shape[:2], bool)
        outside[int(box.y1) : int(box.y2), int(box.x1) : int(box.x2)] = False
        assert np.array_equal(e.frame.image[outside], original[outside])
        assert e.frame.pts == run.inputs[e.frame.index].pts


def test_stream_mel_windows_match_the_whole_file_features(audio_2s):
    run = run_live(45, audio_2s, batch_size=5)
    expected = mel_chunks(melspectrogram(audio_2s), FPS, 45)
    # frame 0's window touches the file's reflect-padded start; frames whose window runs past the end differ too
    inside = [i for i in range(1, 45) if (i * 80 / FPS) + 16 <= audio_2s.size / 200]
    got = np.stack(run.backend.mels)
    np.testing.assert_allclose(got[inside], expected[inside], atol=2e-3)


def test_late_audio_holds_frames_and_stalled_audio_gives_silence():
    audio = speech(1.0)
    late = run_live(20, audio, batch_size=4, audio_delay_s=0.3)  # audio arrives 0.3 s behind the video
    assert [e.frame.index for e in late.out] == list(range(20))
    live = [e for e in late.out if math.isfinite(e.now)]
    assert len(live) >= 10
    assert all(e.now - e.frame.pts >= 0.3 + LOOKAHEAD_S - 1e-6 for e in live)  # they waited for their audio
    assert late.stream.stats.frames_without_audio == 0

    stalled = run_live(30, None, batch_size=4, audio_wait_s=0.4)
    live = [e for e in stalled.out if math.isfinite(e.now)]
    assert len(live) >= 15  # no audio at all: frames still leave once 0.4 s of video has passed them
    assert all(e.now - e.frame.pts <= 0.4 + 1e-6 for e in live)
    assert stalled.stream.stats.frames_without_audio == 30
    assert [e.frame.index for e in stalled.out] == list(range(30))


def test_audio_timeline_resamples_fills_gaps_and_drops_overlaps():
    stream = LipSyncStream(RecordingBackend(), fps=FPS, tracker=FixedTracker())
    stream.push_audio(np.zeros(4800, np.float32), pts=10.0, sample_rate=48000)  # 0.1 s at 48 kHz
    assert stream.audio_end == pytest.approx(10.1)
    stream.push_audio(np.zeros(1600, np.float32), pts=10.2)  # 0.1 s gap
    assert stream.stats.audio_gap_samples == 1600 and stream.audio_end == pytest.approx(10.3)
    stream.push_audio(np.zeros(3200, np.float32), pts=10.25)  # half of it overlaps what is there
    assert stream.stats.audio_overlap_samples == 800 and stream.audio_end == pytest.approx(10.45)


def test_audio_buffer_is_bounded_and_trimmed_behind_the_frames():
    stream = LipSyncStream(RecordingBackend(), fps=FPS, tracker=FixedTracker(), max_buffer_s=1.0)
    stream.push_audio(np.zeros(5 * 16000, np.float32), pts=0.0)
    assert stream.audio_end == pytest.approx(5.0) and stream.buffered_seconds <= 1.0
    unbounded = LipSyncStream(RecordingBackend(), fps=FPS, tracker=FixedTracker(), max_buffer_s=math.inf)
    unbounded.push_audio(np.zeros(5 * 16000, np.float32), pts=0.0)
    assert unbounded.buffered_seconds == pytest.approx(5.0)
    for i in range(60):  # frames going out release the audio before them
        unbounded.push_video(VideoFrame(np.zeros((64, 64, 3), np.uint8), pts=i / FPS, index=i))
    assert unbounded.buffered_seconds < 5.0 - 2.0


def test_latency_below_the_audio_lookahead_is_refused():
    with pytest.raises(ValueError, match="audio"):
        LipSyncStream(RecordingBackend(), max_latency_s=0.1, tracker=FixedTracker())


async def test_stage_in_a_pipeline_keeps_order_and_records_latency(audio_2s):
    backend = RecordingBackend()
    stream = LipSyncStream(backend, fps=FPS, batch_size=4, max_latency_s=0.4, tracker=FixedTracker(frozenset({3})))
    stage = LipSyncStage(lambda: stream)
    inputs = frames(20)

    async def source():
        for i, f in enumerate(inputs):
            yield AudioChunk(audio_2s[i * 640 : (i + 1) * 640], 16000, i / FPS)
            yield f
        yield ControlEvent(ControlKind.END_OF_STREAM, pts=20 / FPS)

    pipeline = Pipeline([stage])
    out = [item async for item in pipeline.run(source())]
    assert [f.index for f in out if isinstance(f, VideoFrame)] == list(range(20))
    assert isinstance(out[-1], ControlEvent)
    assert len(pipeline.log.for_stage("lipsync")) == 20
    assert stage.stream.stats.frames_without_face == 1


@pytest.fixture(scope="module")
def torch_backend():
    from rt_f2f.lipsync.backends import load_backend

    return load_backend("torch", shared_checkpoint(), max_batch=8)


def test_real_generator_and_tracker_change_only_the_lower_face(torch_backend):
    photo = face_photo(192)
    detector = MediaPipeDetector()
    stream = LipSyncStream(torch_backend, fps=FPS, batch_size=4, tracker=FaceTracker(detector, fps=FPS))
    audio = speech(0.6)
    out = stream.push_audio(audio, 0.0)
    for i in range(8):
        out += stream.push_video(VideoFrame(photo, pts=i / FPS, index=i))
    out += stream.flush()
    detector.close()
    assert [f.index for f in out] == list(range(8))
    face = MediaPipeDetector().detect([photo])[0][0].padded((0, 10, 0, 0), 192, 192)
    for f in out:
        diff = np.abs(f.image.astype(int) - photo.astype(int)).max(axis=2)
        changed_rows, changed_cols = np.nonzero(diff)
        assert changed_rows.size > 100  # the random-weight generator did redraw something
        # everything that changed lies inside the (smoothed) face box, in its lower part
        assert changed_cols.min() >= face.x1 - 3 and changed_cols.max() < face.x2 + 3
        assert changed_rows.min() >= face.y1 + 0.2 * face.height and changed_rows.max() < face.y2 + 3


def test_the_stream_and_the_drivers_fake_keep_the_session_contract():
    """``FrameSink`` drives any ``LipSyncSession``: the real stream and the driver tests' fake both take its calls
    (every argument it passes, positionally) and give frames back in order through them alone."""
    real = LipSyncStream(RecordingBackend(), fps=FPS, batch_size=2, max_latency_s=0.4, tracker=FixedTracker())
    for session in (real, FakeLipSyncSession(batch_size=2)):
        assert isinstance(session, LipSyncSession)
        for name in ("push_audio", "push_video", "flush"):
            wanted = [p for p in inspect.signature(getattr(LipSyncSession, name)).parameters if p != "self"]
            inspect.signature(getattr(session, name)).bind(*wanted)
        assert session.batch_size == 2 and session.max_latency_s > 0
        before = session.stats.batches
        session.push_audio(np.zeros(16000, np.float32), 0.0, 16000)
        video = frames(3)
        out = session.push_video(video[0]) + session.push_video(video[1]) + session.push_video(video[2])
        out += session.flush()
        assert [f.index for f in out] == [0, 1, 2]
        stats = session.stats
        assert (stats.frames_in, stats.frames_out, stats.frames_without_face) == (3, 3, 0)
        assert stats.batches == before + 2
