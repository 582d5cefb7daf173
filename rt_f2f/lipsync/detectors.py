"""Face detectors behind ``FaceDetector``: mediapipe's BlazeFace (in the wheel) and S3FD (the original's, when the
user has its weights), and ``load_detector`` that picks one."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence

import numpy as np

from ..errors import ModelMissingError
from .facebox import FaceBox, FaceDetector

log = logging.getLogger(__name__)


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
