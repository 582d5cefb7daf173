"""How long one generator batch of ``n`` frames takes, learned from the batches that ran.

The batcher waits for more frames only as long as the estimate says the batch can still make its earliest
deadline, so this model is what turns "batch by deadline" into a number; it has no clock and no threads.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field


@dataclass
class CostModel:
    """Seconds one generator batch of ``n`` frames takes, learned per batch size from the batches that ran.

    Before any batch of a size has run, the estimate interpolates between the sizes that did (and beyond the
    largest, extends the last slope); below the smallest it takes the smallest's cost: an over-estimate only starts
    a batch a little early, an under-estimate makes frames late. With nothing observed, ``fixed + per_frame * n``.
    """

    fixed: float = 0.0
    per_frame: float = 0.0
    alpha: float = 0.3  # weight of a new observation in the running average of its size
    _sizes: list[int] = field(default_factory=list)  # sorted batch sizes observed
    _cost: dict[int, float] = field(default_factory=dict)

    @property
    def observed(self) -> list[int]:
        """Batch sizes whose cost has been measured, smallest first."""
        return list(self._sizes)

    def observe(self, n: int, seconds: float) -> None:
        if n < 1 or not math.isfinite(seconds) or seconds < 0:
            return
        if n in self._cost:
            self._cost[n] += self.alpha * (seconds - self._cost[n])
        else:
            bisect.insort(self._sizes, n)
            self._cost[n] = seconds

    def estimate(self, n: int) -> float:
        if n < 1:
            return 0.0
        sizes = self._sizes
        if not sizes:
            return self.fixed + self.per_frame * n
        if n in self._cost:
            return self._cost[n]
        i = bisect.bisect_left(sizes, n)
        if i == 0:
            return self._cost[sizes[0]]
        if i == len(sizes):
            last = self._cost[sizes[-1]]
            if len(sizes) == 1:
                return last * n / sizes[-1]
            slope = max(0.0, (last - self._cost[sizes[-2]]) / (sizes[-1] - sizes[-2]))
            return last + slope * (n - sizes[-1])
        lo, hi = sizes[i - 1], sizes[i]
        return self._cost[lo] + (self._cost[hi] - self._cost[lo]) * (n - lo) / (hi - lo)
