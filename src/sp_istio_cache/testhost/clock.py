"""The virtual clock every VM of one model reads, and the timers it fires in order.

Nothing here sleeps: time moves only when a test calls :meth:`VirtualClock.advance` (or the model
moves it to a callout's deadline), so tick and timeout tests are deterministic. Timers due at the
same instant fire in the order they were armed.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

#: 2023-11-14T22:13:20Z: a fixed start, so TTL and Expires arithmetic in tests is exact
DEFAULT_NOW_NS = 1_700_000_000 * 10**9
NS_PER_MS = 1_000_000


@dataclass(order=True)
class _Timer:
    due_ns: int
    seq: int
    key: Hashable = field(compare=False)
    fire: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)


class VirtualClock:
    """Wall (realtime) and monotonic nanoseconds plus one-shot timers.

    Args:
        now_ns: initial wall clock (ns since the epoch); the monotonic clock starts at 0.
    """

    def __init__(self, now_ns: int = DEFAULT_NOW_NS):
        self._start_ns = now_ns
        self.now_ns = now_ns
        self._heap: list[_Timer] = []
        self._by_key: dict[Hashable, _Timer] = {}
        self._seq = 0

    @property
    def monotonic_ns(self) -> int:
        """Nanoseconds since the clock was created (WASI clock 1)."""
        return self.now_ns - self._start_ns

    def arm(self, key: Hashable, delay_ms: float, fire: Callable[[], None]) -> None:
        """Fire ``fire`` ``delay_ms`` from now; replaces a timer armed under the same ``key``."""
        self.cancel(key)
        self._seq += 1
        timer = _Timer(self.now_ns + int(delay_ms * NS_PER_MS), self._seq, key, fire)
        self._by_key[key] = timer
        heapq.heappush(self._heap, timer)

    def cancel(self, key: Hashable) -> None:
        """Disarm the timer under ``key`` (no-op when none)."""
        timer = self._by_key.pop(key, None)
        if timer is not None:
            timer.cancelled = True

    def armed(self, key: Hashable) -> int | None:
        """When the timer under ``key`` fires (ns), or None."""
        timer = self._by_key.get(key)
        return None if timer is None else timer.due_ns

    def advance(self, ms: float, after_each: Callable[[], None] = lambda: None) -> int:
        """Move time forward ``ms`` (>= 0), firing every timer due on the way in time order; the
        clock reads each timer's due time while it fires. ``after_each`` runs after every timer.
        Returns how many timers fired.

        Raises:
            ValueError: ``ms`` is negative (time never goes back).
        """
        if ms < 0:
            raise ValueError(f"advance(ms) needs ms >= 0, got {ms}")
        return self.run_until(self.now_ns + int(ms * NS_PER_MS), after_each)

    def run_until(self, target_ns: int, after_each: Callable[[], None] = lambda: None) -> int:
        """Like :meth:`advance`, to the absolute time ``target_ns`` (never backwards)."""
        fired = 0
        while self._heap and self._heap[0].due_ns <= target_ns:
            timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            del self._by_key[timer.key]
            self.now_ns = max(self.now_ns, timer.due_ns)
            timer.fire()
            fired += 1
            after_each()
        self.now_ns = max(self.now_ns, target_ns)
        return fired
