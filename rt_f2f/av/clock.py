"""Clock drift between the camera and the microphone, estimated from when their frames arrive.

Audio and video pts come from different crystals: a camera clock 0.1 % fast puts the face 300 ms ahead of the voice
after five minutes, far outside what viewers accept (ITU-R BT.1359: 45 ms audio early, 125 ms audio late). Both
sources' frames arrive on one wall clock, so each source's rate against the wall clock can be read off the lag
``arrival - pts``: it grows by ``(wall seconds per pts second - 1)`` per second of pts. Arrival jitter only ever
adds delay, and transport stalls deliver whole bursts late, so the lag is fitted robustly: the minimum lag of each
one-second bin (the frames that got through fastest) and a Theil-Sen line through those minima (a median of
pairwise slopes, which ignores the bins a stall spoiled). Over a short span, jitter looks like drift (8 ms of scatter
over 15 s reads as 500 ppm), so the estimate used is the end of the line's 99 % confidence interval nearest zero:
no correction until the drift is certain, and never more than the data supports.

The audio clock is the session's master (translated speech is placed on it); video pts are re-mapped onto it. The
correction is bounded (a real clock is never off by more than a fraction of a percent, so a larger estimate is
noise) and slew-limited, so re-mapped pts stay in order and never jump.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class _Bin:
    pts: float
    lag: float


class ClockDriftEstimator:
    """Rate of one source clock against the wall clock, from (pts, arrival wall time) pairs."""

    def __init__(self, bin_seconds: float = 1.0, window_seconds: float = 120.0, min_span: float = 10.0) -> None:
        self.bin_seconds = bin_seconds
        self.min_span = min_span
        self._bins: deque[_Bin] = deque(maxlen=max(3, int(math.ceil(window_seconds / bin_seconds))))
        self._current: int | None = None
        self._best: _Bin | None = None
        self._slope: float | None = None
        self._dirty = False

    def add(self, pts: float, arrival: float) -> None:
        index = math.floor(pts / self.bin_seconds)
        lag = arrival - pts
        if self._current is None or index > self._current:
            if self._best is not None:
                self._bins.append(self._best)
                self._dirty = True
            self._current, self._best = index, _Bin(pts, lag)
        elif index == self._current and lag < self._best.lag:
            self._best = _Bin(pts, lag)
        # A frame for an already closed bin (out of order) is ignored: its bin's minimum is already taken.

    @property
    def span(self) -> float:
        return self._bins[-1].pts - self._bins[0].pts if len(self._bins) >= 2 else 0.0

    def slope(self) -> float | None:
        """d(arrival - pts)/d(pts) = wall seconds per source second - 1, shrunk to what the data makes certain.

        None until ``min_span`` seconds are covered.
        """
        if self.span < self.min_span or len(self._bins) < 3:
            return None
        if self._dirty:
            from scipy.stats import theilslopes

            pts = np.fromiter((b.pts for b in self._bins), float, len(self._bins))
            lag = np.fromiter((b.lag for b in self._bins), float, len(self._bins))
            fit = theilslopes(lag, pts, alpha=0.99)
            if fit.low_slope > 0:
                self._slope = float(fit.low_slope)
            elif fit.high_slope < 0:
                self._slope = float(fit.high_slope)
            else:
                self._slope = 0.0  # no drift is certain yet
            self._dirty = False
        return self._slope


class VideoClockMapper:
    """Re-maps video pts onto the audio clock: ``mapped = pts + correction``, correction bounded and slewed.

    The clocks are taken to agree at the first video frame (the session starts them together); from there the
    correction follows ``(pts - first_pts) * (ratio - 1)``, where ``ratio`` is audio seconds per video second.
    """

    def __init__(
        self,
        max_drift: float = 2e-3,
        slew: float = 0.05,
        min_span: float = 10.0,
        window_seconds: float = 120.0,
        enabled: bool = True,
    ) -> None:
        self.max_drift = max_drift
        self.slew = slew
        self.enabled = enabled
        self.video = ClockDriftEstimator(window_seconds=window_seconds, min_span=min_span)
        self.audio = ClockDriftEstimator(window_seconds=window_seconds, min_span=min_span)
        self._audio_seen = False
        self._anchor: float | None = None
        self._last_pts: float | None = None
        self.correction = 0.0

    def note_audio(self, pts: float, arrival: float) -> None:
        """Optional: raw input audio arrivals; without them the audio clock is taken to run at the wall clock."""
        self._audio_seen = True
        self.audio.add(pts, arrival)

    def ratio(self) -> float:
        """Audio seconds per video second (1.0 while the fit is not ready), clamped to the drift bound."""
        video = self.video.slope()
        if video is None:
            return 1.0
        audio = self.audio.slope() if self._audio_seen else 0.0
        if audio is None:
            return 1.0
        ratio = (1.0 + video) / (1.0 + audio)
        return min(max(ratio, 1.0 - self.max_drift), 1.0 + self.max_drift)

    @property
    def drift_ppm(self) -> float:
        """Video clock rate error in ppm: positive when the camera clock runs fast against the audio clock."""
        return (1.0 / self.ratio() - 1.0) * 1e6

    def map(self, pts: float, arrival: float) -> float:
        """Record the arrival and return the pts on the audio clock."""
        self.video.add(pts, arrival)
        if self._anchor is None:
            self._anchor = pts
        if not self.enabled:
            return pts
        if self._last_pts is not None and pts > self._last_pts:
            target = (pts - self._anchor) * (self.ratio() - 1.0)
            step = self.slew * (pts - self._last_pts)
            self.correction += min(max(target - self.correction, -step), step)
        if self._last_pts is None or pts > self._last_pts:
            self._last_pts = pts
        return pts + self.correction
