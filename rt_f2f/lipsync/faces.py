"""Finding the face in every frame: detect now and then, track in between, smooth the box over time.

The original Wav2Lip runs S3FD on every frame and averages 5 boxes (future ones included). Here detection runs every
``detect_every`` frames (and at once when the track is lost); between detections the box follows the face with
sparse optical flow (KLT points in the box, a RANSAC similarity fit), which costs a millisecond instead of a
detector pass. Boxes are smoothed with a One-Euro filter: heavy smoothing while the head is still (no crop
jitter, which shows as a shimmering mouth), little lag when it moves. A detection that disagrees with the track
(low IoU) is treated as an outlier once and accepted only if the next detection confirms it, so one false positive
does not yank the crop away. Frames where no face is found yield ``None``; callers pass them through unchanged and
count them (``TrackerStats``).

The parts live beside this module: ``facebox`` (the box and the detector protocol), ``detectors`` (mediapipe's
BlazeFace by default, S3FD when the user supplies ``s3fd.pth``), ``one_euro`` (the filter) and ``flow`` (the
optical-flow step). ``DEFAULT_PADS``, ``FaceBox``, ``MediaPipeDetector`` and ``load_detector`` are re-exported here
for the callers that still import them from this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .detectors import MediaPipeDetector, load_detector
from .facebox import DEFAULT_PADS, FaceBox, FaceDetector
from .flow import FlowTracker
from .one_euro import OneEuroFilter

__all__ = [
    "DEFAULT_PADS",
    "FaceBox",
    "FaceDetector",
    "FaceTracker",
    "MediaPipeDetector",
    "StaticFace",
    "TrackerStats",
    "detect_static",
    "load_detector",
]


@dataclass
class TrackerStats:
    """What the tracker did, for logs and benchmarks: faceless frames are counted, never fatal."""

    frames: int = 0
    with_face: int = 0
    without_face: int = 0
    detector_runs: int = 0
    flow_steps: int = 0
    tracks_started: int = 0
    outliers_rejected: int = 0
    faceless_indices: list[int] = field(default_factory=list)  # the first MAX_LISTED of them

    MAX_LISTED = 1000

    def note_faceless(self, index: int) -> None:
        self.without_face += 1
        if len(self.faceless_indices) < self.MAX_LISTED:
            self.faceless_indices.append(index)


class FaceTracker:
    """Per-frame face boxes for one speaker, in frame order: ``update(image, t)`` or batched ``track(images)``.

    Returns padded, clipped integer boxes ready to crop (``FaceBox.padded``), or None for a frame without a face.
    """

    def __init__(
        self,
        detector: FaceDetector,
        detect_every: int = 5,
        pads: Sequence[int] = DEFAULT_PADS,
        smooth: bool = True,
        fps: float = 25.0,
        iou_min: float = 0.3,
        min_cutoff: float = 1.0,
        beta: float = 2.0,
    ) -> None:
        if detect_every < 1:
            raise ValueError("detect_every must be >= 1")
        if len(pads) != 4:
            raise ValueError("pads are (top, bottom, left, right)")
        self.detector = detector
        self.detect_every = detect_every
        self.pads = tuple(int(p) for p in pads)
        self.smooth = smooth
        self.fps = fps
        self.iou_min = iou_min
        self.stats = TrackerStats()
        self._filter = OneEuroFilter(min_cutoff=min_cutoff, beta=beta)
        self._flow = FlowTracker()
        self._raw: FaceBox | None = None  # the unsmoothed box in the last frame (what flow carries forward)
        self._pending_outlier: FaceBox | None = None

    def reset(self) -> None:
        self._raw = None
        self._pending_outlier = None
        self._filter.reset()
        self._flow.reset()

    def _start(self, image: np.ndarray, box: FaceBox) -> None:
        self._raw = box
        self._pending_outlier = None
        self._filter.reset()
        self._flow.start(image, box)
        self.stats.tracks_started += 1

    def _is_keyframe(self, index: int) -> bool:
        return index % self.detect_every == 0

    def _associate(self, image: np.ndarray, detections: list[FaceBox], carried: FaceBox | None) -> FaceBox | None:
        """Pick the detection that continues the track; confirm a jump before following it."""
        if not detections:
            self.reset()
            return None
        if self._raw is None:
            self._start(image, detections[0])
            return detections[0]
        reference = carried or self._raw
        best = max(detections, key=reference.iou)
        if reference.iou(best) >= self.iou_min:
            self._pending_outlier = None
            self._raw = best
            self._flow.start(image, best)
            return best
        if self._pending_outlier is not None and self._pending_outlier.iou(best) >= self.iou_min:
            self._start(image, best)  # two detections agree: the face really moved (or it is a new speaker)
            return best
        if carried is None:  # nothing to hold on to: take the detection
            self._start(image, best)
            return best
        self.stats.outliers_rejected += 1
        self._pending_outlier = best
        self._raw = carried
        return carried

    def update(
        self, image: np.ndarray, t: float | None = None, detections: list[FaceBox] | None = None
    ) -> FaceBox | None:
        """The padded face box in ``image`` (the next frame in order), or None when there is no face.

        ``detections`` lets a batched caller hand in this frame's detector output computed ahead of time.
        """
        index = self.stats.frames
        t = index / self.fps if t is None else t
        self.stats.frames += 1
        carried = None
        if self._raw is not None:
            carried = self._flow.step(image, self._raw)
            if carried is not None:
                self.stats.flow_steps += 1
        if self._raw is None or carried is None or self._is_keyframe(index) or detections is not None:
            if detections is None:
                detections = self.detector.detect([image])[0]
                self.stats.detector_runs += 1
            raw = self._associate(image, detections, carried)
        else:
            raw = self._raw = carried
        if raw is None:
            self.stats.note_faceless(index)
            return None
        self.stats.with_face += 1
        box = FaceBox.from_array(self._filter(raw.as_array(), t, scale=raw.width), raw.score) if self.smooth else raw
        return box.padded(self.pads, image.shape[1], image.shape[0])

    def track(self, images: Sequence[np.ndarray], times: Sequence[float] | None = None) -> list[FaceBox | None]:
        """Boxes for consecutive frames; keyframe detections run as one detector batch (S3FD batches on a GPU)."""
        first = self.stats.frames
        keys = [i for i in range(len(images)) if self._is_keyframe(first + i)]
        found = dict(zip(keys, self.detector.detect([images[i] for i in keys]), strict=True)) if keys else {}
        self.stats.detector_runs += len(keys)
        out = []
        for i, image in enumerate(images):
            out.append(self.update(image, None if times is None else times[i], found.get(i)))
        return out


class StaticFace:
    """The same box on every frame: a still photo (detected once) or a user-given box. Tracker-compatible."""

    def __init__(self, box: FaceBox | None) -> None:
        self.box = box
        self.stats = TrackerStats()

    def update(
        self, image: np.ndarray, t: float | None = None, detections: list[FaceBox] | None = None
    ) -> FaceBox | None:
        index = self.stats.frames
        self.stats.frames += 1
        if self.box is None:
            self.stats.note_faceless(index)
            return None
        self.stats.with_face += 1
        return self.box

    def track(self, images: Sequence[np.ndarray], times: Sequence[float] | None = None) -> list[FaceBox | None]:
        return [self.update(img) for img in images]


def detect_static(detector: FaceDetector, image: np.ndarray, pads: Sequence[int] = DEFAULT_PADS) -> StaticFace:
    """Detect once in a still and return a tracker that repeats that (padded) box."""
    found = detector.detect([image])[0]
    box = found[0].padded(pads, image.shape[1], image.shape[0]) if found else None
    return StaticFace(box)
