"""Finding the face in every frame: detect now and then, track in between, smooth the box over time.

The original Wav2Lip runs S3FD on every frame and averages 5 boxes (future ones included). Here detection runs every
``detect_every`` frames (and at once when the track is lost); between detections the box follows the face with
sparse optical flow (KLT points in the box, a RANSAC similarity fit), which costs a millisecond instead of a
detector pass. Boxes are smoothed with a One-Euro filter: heavy smoothing while the head is still (no crop
jitter, which shows as a shimmering mouth), little lag when it moves. A detection that disagrees with the track
(low IoU) is treated as an outlier once and accepted only if the next detection confirms it, so one false positive
does not yank the crop away. Frames where no face is found yield ``None``; callers pass them through unchanged and
count them (``TrackerStats``).

Detectors: mediapipe's BlazeFace (carried by the ``mediapipe`` wheel, expects RGB) by default, or S3FD when the
user supplies ``s3fd.pth`` (same detector, same crops as the original).
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np

from ..errors import ModelMissingError

log = logging.getLogger(__name__)

DEFAULT_PADS = (0, 10, 0, 0)  # top, bottom, left, right: the original's default (include the chin)


@dataclass(frozen=True)
class FaceBox:
    """A face rectangle in pixel coordinates (x2, y2 exclusive) with the detector's confidence."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float = 1.0

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    @property
    def center(self) -> tuple[float, float]:
        return (self.x1 + self.x2) / 2, (self.y1 + self.y2) / 2

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    def iou(self, other: FaceBox) -> float:
        ix = min(self.x2, other.x2) - max(self.x1, other.x1)
        iy = min(self.y2, other.y2) - max(self.y1, other.y1)
        if ix <= 0 or iy <= 0:
            return 0.0
        inter = ix * iy
        return inter / (self.area + other.area - inter)

    def as_array(self) -> np.ndarray:
        """(cx, cy, w, h): the parametrisation that is smoothed (centre and size move independently)."""
        cx, cy = self.center
        return np.array([cx, cy, self.width, self.height], dtype=np.float64)

    @classmethod
    def from_array(cls, a: np.ndarray, score: float = 1.0) -> FaceBox:
        cx, cy, w, h = (float(v) for v in a)
        return cls(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, score)

    def padded(self, pads: Sequence[int], width: int, height: int) -> FaceBox:
        """The crop Wav2Lip sees: pads (top, bottom, left, right) added, rounded to whole pixels, clipped."""
        top, bottom, left, right = pads
        x1 = int(np.clip(round(self.x1 - left), 0, width - 1))
        y1 = int(np.clip(round(self.y1 - top), 0, height - 1))
        x2 = int(np.clip(round(self.x2 + right), x1 + 1, width))
        y2 = int(np.clip(round(self.y2 + bottom), y1 + 1, height))
        return FaceBox(x1, y1, x2, y2, self.score)

    def ints(self) -> tuple[int, int, int, int]:
        return int(self.x1), int(self.y1), int(self.x2), int(self.y2)


class FaceDetector(Protocol):
    """Finds faces in RGB uint8 frames; each frame's list is ordered best first."""

    name: str

    def detect(self, images: Sequence[np.ndarray]) -> list[list[FaceBox]]: ...

    def close(self) -> None: ...


class MediaPipeDetector:
    """BlazeFace from the mediapipe wheel: ~3 ms on a 256 px frame on one CPU core.

    ``model`` "short" is tuned for faces within ~2 m of the camera (webcams, talking heads), "full" for smaller,
    farther faces; "both" tries short first and falls back to full on frames where it finds nothing.
    """

    name = "mediapipe"

    def __init__(self, model: str = "both", min_confidence: float = 0.5) -> None:
        if model not in ("short", "full", "both"):
            raise ValueError(f"model must be 'short', 'full' or 'both', got {model!r}")
        # mediapipe's C++ side logs feedback-tensor and XNNPACK notices to stderr on every graph start
        os.environ.setdefault("GLOG_minloglevel", "2")
        # protobuf warns on every mediapipe call that mediapipe 0.10.14 uses a deprecated API; nothing to act on
        warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype", category=UserWarning)
        from mediapipe.python.solutions import face_detection

        selections = {"short": [0], "full": [1], "both": [0, 1]}[model]
        self._detectors = [
            face_detection.FaceDetection(model_selection=s, min_detection_confidence=min_confidence) for s in selections
        ]

    def _detect_one(self, image: np.ndarray) -> list[FaceBox]:
        h, w = image.shape[:2]
        rgb = np.ascontiguousarray(image)
        for detector in self._detectors:
            result = detector.process(rgb)
            if not result.detections:
                continue
            boxes = []
            for det in result.detections:
                rel = det.location_data.relative_bounding_box
                x1, y1 = rel.xmin * w, rel.ymin * h
                x2, y2 = x1 + rel.width * w, y1 + rel.height * h
                box = FaceBox(
                    float(np.clip(x1, 0, w)), float(np.clip(y1, 0, h)), float(np.clip(x2, 0, w)), float(np.clip(y2, 0, h)),
                    float(det.score[0]) if det.score else 1.0,
                )  # fmt: skip
                if box.area > 0:
                    boxes.append(box)
            if boxes:
                return sorted(boxes, key=lambda b: -b.score)
        return []

    def detect(self, images: Sequence[np.ndarray]) -> list[list[FaceBox]]:
        return [self._detect_one(img) for img in images]

    def close(self) -> None:
        for detector in self._detectors:
            detector.close()
        self._detectors = []


def load_detector(
    name: str = "auto",
    s3fd_path: str | os.PathLike | None = None,
    device: str = "cpu",
    batch_size: int = 16,
) -> FaceDetector:
    """``auto``: S3FD when its weights are on this machine (the original's detector), else mediapipe."""
    if name not in ("auto", "mediapipe", "s3fd"):
        raise ValueError(f"unknown face detector {name!r}; expected auto, mediapipe or s3fd")
    if name in ("auto", "s3fd"):
        from .s3fd import S3FDDetector

        path = s3fd_path
        if path is None:
            from ..models import model_path

            try:
                path = model_path("s3fd")
            except ModelMissingError as exc:
                if name == "s3fd":
                    raise
                log.info("S3FD not available (%s); detecting faces with mediapipe", exc.message)
                path = None
        if path is not None:
            return S3FDDetector(path, device=device, batch_size=batch_size)
    return MediaPipeDetector()


class OneEuroFilter:
    """Casiez et al.'s 1-Euro filter on a vector: cutoff rises with speed, so still means smooth and moving means fast.

    Speed is measured in box sizes per second (``scale``) so one setting suits small and large faces alike.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 2.0, d_cutoff: float = 1.0) -> None:
        self.min_cutoff = min_cutoff
        self.beta = beta
        self.d_cutoff = d_cutoff
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    @staticmethod
    def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def reset(self) -> None:
        self._x = self._dx = self._t = None

    def __call__(self, x: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or self._t is None or t <= self._t:
            if self._x is None or self._t is None:
                self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return self._x.copy()
        dt = t - self._t
        dx = (x - self._x) / dt
        a_d = self._alpha(self.d_cutoff, dt)
        self._dx = a_d * dx + (1 - a_d) * self._dx
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx) / max(scale, 1e-6)
        a = self._alpha(cutoff, dt)
        self._x = a * x + (1 - a) * self._x
        self._t = t
        return self._x.copy()


class FlowTracker:
    """Moves a box from one frame to the next with pyramidal Lucas-Kanade on corner points inside it.

    Points that do not survive a forward-backward check are dropped; a similarity transform (RANSAC) over the rest
    gives the box's shift and scale. Too few points, or a fit that fails, means the track is lost.
    """

    def __init__(self, max_side: int = 320, min_points: int = 8, max_points: int = 60) -> None:
        self.max_side = max_side
        self.min_points = min_points
        self.max_points = max_points
        self._gray: np.ndarray | None = None
        self._points: np.ndarray | None = None
        self._scale = 1.0

    def _to_gray(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        self._scale = min(1.0, self.max_side / max(h, w))
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        if self._scale < 1.0:
            gray = cv2.resize(gray, (round(w * self._scale), round(h * self._scale)), interpolation=cv2.INTER_AREA)
        return gray

    def _seed(self, gray: np.ndarray, box: FaceBox) -> np.ndarray | None:
        s = self._scale
        mask = np.zeros_like(gray)
        x1, y1 = max(0, int(box.x1 * s)), max(0, int(box.y1 * s))
        x2, y2 = min(gray.shape[1], int(math.ceil(box.x2 * s))), min(gray.shape[0], int(math.ceil(box.y2 * s)))
        if x2 - x1 < 4 or y2 - y1 < 4:
            return None
        mask[y1:y2, x1:x2] = 255
        min_dist = max(2.0, min(x2 - x1, y2 - y1) / 15)
        pts = cv2.goodFeaturesToTrack(gray, self.max_points, 0.01, min_dist, mask=mask, blockSize=5)
        return None if pts is None else pts.astype(np.float32)

    def start(self, image: np.ndarray, box: FaceBox) -> None:
        """Take ``box`` in ``image`` as the truth to track from (after a detection)."""
        self._gray = self._to_gray(image)
        self._points = self._seed(self._gray, box)

    def reset(self) -> None:
        self._gray = self._points = None

    def step(self, image: np.ndarray, box: FaceBox) -> FaceBox | None:
        """``box`` (in the previous frame) carried into ``image``, or None when the face cannot be followed."""
        gray = self._to_gray(image)
        prev, pts = self._gray, self._points
        self._gray = gray
        if prev is None or prev.shape != gray.shape or pts is None or len(pts) < self.min_points:
            self._points = None
            return None
        lk = {
            "winSize": (15, 15),
            "maxLevel": 3,
            "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03),
        }
        nxt, st, _ = cv2.calcOpticalFlowPyrLK(prev, gray, pts, None, **lk)
        back, st_b, _ = cv2.calcOpticalFlowPyrLK(gray, prev, nxt, None, **lk)
        fb_error = np.linalg.norm((back - pts).reshape(-1, 2), axis=1)
        good = (st.reshape(-1) == 1) & (st_b.reshape(-1) == 1) & (fb_error < 1.0)
        if good.sum() < self.min_points:
            self._points = None
            return None
        p0, p1 = pts[good].reshape(-1, 2), nxt[good].reshape(-1, 2)
        matrix, inliers = cv2.estimateAffinePartial2D(p0, p1, method=cv2.RANSAC, ransacReprojThreshold=1.5)
        if matrix is None or inliers is None or int(inliers.sum()) < self.min_points:
            self._points = None
            return None
        scale = float(math.hypot(matrix[0, 0], matrix[1, 0]))
        if not 0.8 < scale < 1.25:  # a face does not change size by 20 % between frames: the fit is wrong
            self._points = None
            return None
        s = self._scale
        cx, cy = box.center
        new_c = matrix @ np.array([cx * s, cy * s, 1.0])
        self._points = p1[inliers.reshape(-1) == 1].reshape(-1, 1, 2).astype(np.float32)
        w, h = box.width * scale, box.height * scale
        return FaceBox(
            new_c[0] / s - w / 2, new_c[1] / s - h / 2, new_c[0] / s + w / 2, new_c[1] / s + h / 2, box.score
        )


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
