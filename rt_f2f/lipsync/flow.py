"""Following a face box between detections with sparse optical flow (a millisecond instead of a detector pass)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from .facebox import FaceBox


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
