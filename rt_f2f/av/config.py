"""One face-to-face direction's settings and outcome, and the A/V scheduler built for them: shared by the live
driver (``live``), the file driver (``facetoface``), the camera command and the call server's lip-sync feed.
"""

from __future__ import annotations

from collections.abc import MutableSequence
from dataclasses import dataclass, field

import numpy as np

from ..frames import Caption
from .schedule import SchedulerConfig
from .scheduler import AVScheduler

OUTPUT_RATE = 16000  # Wav2Lip's rate; the file's AAC track is speech, so 16 kHz loses nothing that matters


@dataclass
class FaceToFaceConfig:
    delay: float = 2.0
    max_delay: float = 4.0
    drop_after: float | None = None  # explicit live policy: drop clauses later than this (None: keep every clause)
    fps: float = 25.0
    realtime: bool = False
    lipsync_batch: int = 8
    max_render_lag: float = 0.5  # seconds a re-mouthed frame may land after its playout (predicted at its push)
    render_budget: float = 0.1  # seconds of lead, beyond lip-sync's batching latency, a frame gets for its render
    # live: what a batch costs is re-measured (one batch is rendered whatever the prediction) once the last measure
    # is this old; otherwise one slow batch (a first call, a burst of load) would stop every render for good
    render_cost_stale_s: float = 2.0
    # scheduled items queued for the lip-sync worker before the output side waits for it (from files) or stops
    # handing it more (live: the output never waits for lip-sync; what is not handed on is counted)
    max_inflight: int = 256
    # Emit each frame sent to lip-sync at once as it is, and again when re-mouthed (same pts): for a receiver that
    # paces output and keeps the latest version it has of a frame at playout. Off: every frame once, in order.
    provisional_frames: bool = False


@dataclass
class FaceToFaceResult:
    """What came out, in output-clock order, and what the pipeline decided on the way."""

    frames_written: int = 0
    audio: list[np.ndarray] = field(default_factory=list)
    captions: list[Caption] = field(default_factory=list)
    first_word_end: dict[int, float] = field(default_factory=dict)  # clause id -> end of its first source word
    lipsync_rendered: int = 0
    lipsync_skipped_behind: int = 0
    lipsync_without_face: int = 0
    # realtime: wall time a frame was ready - its playout (a call keeps a bounded deque here, a file every frame)
    render_lag: MutableSequence[float] = field(default_factory=list)
    wall_seconds: float = 0.0
    scheduler: AVScheduler | None = None

    @property
    def audio_samples(self) -> np.ndarray:
        return np.concatenate(self.audio) if self.audio else np.zeros(0, np.float32)


def build_scheduler(
    config: FaceToFaceConfig,
    lipsync_latency: float | None,
    sample_rate: int = OUTPUT_RATE,
    origin_wall: float | None = None,
) -> AVScheduler:
    """The A/V scheduler for one speaker's direction; ``lipsync_latency`` is the stream's batching latency (None:
    no lip-sync). Frames leave the scheduler ahead of playout by that latency plus ``render_budget``: lip-sync's
    wait and render time must come out of the delay budget D, not be added after it."""
    lead = SchedulerConfig.lead
    if lipsync_latency is not None:
        room = config.delay - SchedulerConfig.audio_lookahead - 0.05
        lead = max(lead, min(lipsync_latency + config.render_budget, room))
    return AVScheduler(
        SchedulerConfig(
            delay=config.delay,
            max_delay=config.max_delay,
            drop_after=config.drop_after,
            sample_rate=sample_rate,
            fps=config.fps,
            lead=lead,
        ),
        origin_wall=origin_wall,
    )


def ear_voice_spans(result: FaceToFaceResult) -> list[float]:
    """Per placed clause: output start of its translated audio minus the end of its first source word, both on
    the session clock (the output clock runs D behind, so the span includes the target delay)."""
    if result.scheduler is None:
        return []
    spans = []
    for timing in result.scheduler.metrics().clauses:
        first = result.first_word_end.get(timing.clause_id)
        if first is not None:
            spans.append(timing.start_out - first)
    return spans
