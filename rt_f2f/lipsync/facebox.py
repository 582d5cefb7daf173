"""A face rectangle and what finds one: the geometry every detector, tracker and compositor shares.

Kept apart from the detectors (mediapipe, S3FD) and the tracker so that each of them can import it without
importing the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

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
