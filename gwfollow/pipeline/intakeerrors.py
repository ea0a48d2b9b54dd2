"""What a listener could not take in: a count, the last reason, and when it counts as degraded.

An *intake error* is an input a listener received but could not turn into a
stored, processed alert: a message the store refused, or one that ended as a
dead letter (unparsable, wrong schema, unusable sky map).  A listener is
**degraded** while it has had at least ``threshold`` intake errors within the
last ``window_s`` seconds (``service.degraded_intake_errors`` and
``service.degraded_window_s``): isolated bad messages are normal on a public
stream, a run of them means something upstream or here is broken.  It is ok
again once the window holds fewer.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class IntakeErrors:
    """Intake errors of one listener and the degraded rule above.

    Parameters
    ----------
    threshold : int
        Errors within the window that make the listener degraded (>= 1).
    window_s : float
        The sliding window, seconds.
    clock : callable, optional
        Monotonic seconds (``time.monotonic``).
    """

    def __init__(self, threshold: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.window_s = window_s
        self.total = 0
        self.last: str | None = None
        self._clock = clock
        self._times: deque[float] = deque()

    def add(self, reason: str) -> None:
        """Count one error (``reason`` names the input and what was wrong)."""
        self.total += 1
        self.last = reason
        self._times.append(self._clock())
        self._trim()

    def recent(self) -> int:
        """Errors within the window."""
        self._trim()
        return len(self._times)

    @property
    def degraded(self) -> bool:
        return self.recent() >= self.threshold

    def _trim(self) -> None:
        horizon = self._clock() - self.window_s
        while self._times and self._times[0] < horizon:
            self._times.popleft()
        while len(self._times) > self.threshold:  # only whether the threshold is reached matters
            self._times.popleft()
