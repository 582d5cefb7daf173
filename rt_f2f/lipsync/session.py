"""The typed contract between a live lip-sync session and the drivers that feed it.

A driver (``rt_f2f.av.live.FrameSink``: the file pipeline, the camera command and the call server all use it) pushes
the output audio and the frames that play with it, in output-clock order, and gets re-mouthed frames back in that
order; ``flush`` finishes whatever is still waiting. What it plans with: ``batch_size`` (frames rendered together),
``max_latency_s`` (the longest a frame waits for its batch, in media time) and ``stats`` (how many frames went in,
came out, had no face, and how many batches ran). livekit agents' ``VideoGenerator`` is the model (push audio, push
video, flush); unlike it, a session here is synchronous and returns frames from each call, because it runs on the
driver's one worker thread. ``lipsync.stream.LipSyncStream`` implements it; ``tests/fakes.FakeLipSyncSession``
stands in for it in the driver's tests.

This module imports nothing of the A/V package, so ``rt_f2f.av`` can depend on it without a circle.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from ..frames import VideoFrame
from .facebox import FaceBox


class SessionStats(Protocol):
    """The figures a driver reads of a session, while it runs (plain counters)."""

    @property
    def frames_in(self) -> int: ...

    @property
    def frames_out(self) -> int: ...

    @property
    def frames_without_face(self) -> int: ...

    @property
    def batches(self) -> int: ...


@runtime_checkable
class LipSyncSession(Protocol):
    """One speaker's live lip-sync: audio and frames in, re-mouthed frames out in the order they went in.

    Not thread-safe: one thread drives it (the thread it was built on, where its face detector lives).
    """

    @property
    def batch_size(self) -> int: ...

    @property
    def max_latency_s(self) -> float: ...

    @property
    def stats(self) -> SessionStats: ...

    def push_audio(self, samples: np.ndarray, pts: float, sample_rate: int) -> list[VideoFrame]:
        """Mono audio starting at ``pts`` (session clock); returns the frames it completes (possibly none)."""
        ...

    def push_video(self, frame: VideoFrame) -> list[VideoFrame]:
        """One frame, in display order; returns the frames ready to show, in order."""
        ...

    def flush(self) -> list[VideoFrame]:
        """Finish every waiting frame (audio that never came is silence) and return them."""
        ...


class FaceTrack(Protocol):
    """Where the face is in each frame, called once per frame in order: ``faces.FaceTracker`` (detect now and then,
    follow the face in between) or ``faces.StaticFace`` (one box for a still photo)."""

    def update(self, image: np.ndarray, t: float | None = None) -> FaceBox | None:
        """The padded face box in ``image`` at media time ``t``, or None when there is no face."""
        ...
