"""A due-time queue for entries that arrive almost in time order.

Clicks reach the consumer nearly sorted by time (each writer's log is sorted;
writers interleave chunk by chunk), so their window-closing times are nearly
sorted too. A binary heap pays O(log n) comparisons per push and pop on a
queue of every pending click; here each entry is appended to the first of a
few *lanes* (deques kept non-decreasing) whose tail it does not precede, and
only entries that fit no lane go to a heap. For interleaved sorted streams a
push and a pop are O(1). Measured on 200,000 clicks: heap push+pop was half
of the attribution's CPU time.
"""

from __future__ import annotations

import heapq
import math
from collections import deque

Entry = tuple[float, int, str]  # (due at, sequence, key)


class CloseQueue:
    def __init__(self, max_lanes: int = 8) -> None:
        self.max_lanes = max_lanes
        self._lanes: list[deque[Entry]] = []
        self._heap: list[Entry] = []
        self.next_at = math.inf  # earliest due time held (lower bound is exact)

    def __len__(self) -> int:
        return len(self._heap) + sum(map(len, self._lanes))

    def push(self, entry: Entry) -> None:
        at = entry[0]
        if at < self.next_at:
            self.next_at = at
        for lane in self._lanes:
            if not lane or lane[-1][0] <= at:
                lane.append(entry)
                return
        if len(self._lanes) < self.max_lanes:
            self._lanes.append(deque([entry]))
        else:
            heapq.heappush(self._heap, entry)

    def pop_due(self, before: float) -> list[Entry]:
        """Remove and return every entry due strictly before ``before`` (any order)."""
        if self.next_at >= before:
            return []
        due: list[Entry] = []
        for lane in self._lanes:
            while lane and lane[0][0] < before:
                due.append(lane.popleft())
        heap = self._heap
        while heap and heap[0][0] < before:
            due.append(heapq.heappop(heap))
        heads = [lane[0][0] for lane in self._lanes if lane]
        if heap:
            heads.append(heap[0][0])
        self.next_at = min(heads, default=math.inf)
        return due
