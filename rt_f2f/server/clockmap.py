"""Media time -> the wall time it arrived: how a clause's source words are dated on the server's clock."""

from __future__ import annotations

import bisect
from collections import deque


class WallClockMap:
    """Media time (pts, seconds) -> wall time it arrived, for the last ``horizon`` seconds.

    The engine reports where in the source audio each clause started; this turns that back into the moment the
    server heard it, which is what the speech lag (and so the video delay) is measured from.
    """

    def __init__(self, horizon_s: float = 60.0) -> None:
        self.horizon_s = horizon_s
        self._pts: deque[float] = deque()
        self._wall: deque[float] = deque()

    def add(self, pts: float, wall: float) -> None:
        self._pts.append(pts)
        self._wall.append(wall)
        while self._pts and pts - self._pts[0] > self.horizon_s:
            self._pts.popleft()
            self._wall.popleft()

    def wall_at(self, pts: float) -> float | None:
        if not self._pts or pts < self._pts[0] - 1.0:
            return None
        i = bisect.bisect_right(self._pts, pts) - 1
        if i < 0:
            return self._wall[0] - (self._pts[0] - pts)
        return self._wall[i] + (pts - self._pts[i])
