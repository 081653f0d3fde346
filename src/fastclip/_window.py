"""A sliding window of floats kept sorted: order statistics in O(log n) per push.

Used by the explosion monitor of :mod:`fastclip.train` (median and maximum of
the recent gradient norms) and by :class:`fastclip.AutoClip` (a percentile of
the norm history).
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterable


class SortedWindow:
    """The last ``size`` values pushed (all of them for ``size=None``), in
    arrival order and sorted.

    A push costs ``O(log n)`` comparisons plus one list insertion (and one
    deletion once the window is full), not a sort.
    """

    __slots__ = ("order", "size", "sorted")

    def __init__(self, size: int | None, values: Iterable[float] = ()) -> None:
        self.size = size
        self.order: deque[float] = deque()
        self.sorted: list[float] = []
        for v in values:
            self.push(float(v))

    def __len__(self) -> int:
        return len(self.order)

    def push(self, v: float) -> None:
        """Append ``v``, dropping the oldest value once more than ``size`` are held."""
        self.order.append(v)
        bisect.insort(self.sorted, v)
        if self.size is not None and len(self.order) > self.size:
            old = self.order.popleft()
            del self.sorted[bisect.bisect_left(self.sorted, old)]

    def max(self) -> float:
        """The largest value held (NaN when empty)."""
        return self.sorted[-1] if self.sorted else math.nan

    def median(self) -> float:
        """The median of the values held (NaN when empty)."""
        s, n = self.sorted, len(self.sorted)
        if n == 0:
            return math.nan
        h = n // 2
        return s[h] if n % 2 else 0.5 * (s[h - 1] + s[h])
