"""A process-wide budget of decoded-pixel bytes: every place that decodes an image holds its share while the
pixels are in memory, so concurrent decodes of huge images queue instead of adding up.

Why: a 0.5 MB PNG can be 13000x13000 pixels (676 MB decoded). Requests that skip Gradio's queue (the
editor's round trips) and upload threads could decode several at once; the budget makes the total of
decoded pixels in a process at most ``limit`` bytes, plus one image when a single image is larger than the
whole budget (it then runs alone rather than never).

Cheap when there is room (one lock acquire and release, a few µs); when there is not, big items are served
first come first served (one waiting is not overtaken by later big ones), while small ones take room as soon
as there is some (an ordinary photo never waits for a queue of huge ones). Pure: imports nothing of ours.
"""

from __future__ import annotations

import threading
from collections import deque
from contextlib import contextmanager
from typing import Iterator

BYTES_PER_PIXEL = 4  # Pillow keeps RGB (and RGBA, I, F) pixels in 4 bytes; an upper bound for L and P
DEFAULT_LIMIT = 768 << 20
SMALL_SHARE = 16  # items up to 1/16 of the budget (48 MB of 768: a 12-megapixel decode) never queue behind big ones


def decoded_bytes(width: int, height: int, bytes_per_pixel: int = BYTES_PER_PIXEL) -> int:
    """What decoding a ``width`` x ``height`` image takes in memory (Pillow: 4 bytes a pixel)."""
    return max(0, int(width)) * max(0, int(height)) * bytes_per_pixel


class PixelBudget:
    """A counting semaphore in bytes. ``hold(n)`` waits until ``n`` more bytes fit under ``limit`` (or nothing
    else is held: an item larger than the whole budget proceeds alone), and gives them back on exit, also
    on an exception. Waiters are served in arrival order."""

    def __init__(self, limit: int = DEFAULT_LIMIT):
        self.limit = max(1, int(limit))
        self.used = 0
        self.peak = 0  # the most bytes held at once (benchmarks and tests read it)
        self._cv = threading.Condition(threading.Lock())
        self._waiting: deque[object] = deque()

    def _fits(self, n: int) -> bool:
        return self.used == 0 or self.used + n <= self.limit

    def acquire(self, n: int) -> int:
        """Take ``n`` bytes, waiting for room; returns ``n`` (what to release). A small item (at most
        1/SMALL_SHARE of the budget: a photo's display copy) takes room as soon as there is some, even past
        a big one waiting, so a reviewer's ordinary images never queue behind a stream of huge ones."""
        n = max(0, int(n))
        small = n <= self.limit // SMALL_SHARE
        with self._cv:
            if (small or not self._waiting) and self._fits(n):  # the common case: room now, nobody ahead
                self.used += n
                self.peak = max(self.peak, self.used)
                return n
            me = object()
            self._waiting.append(me)
            try:
                while not (self._fits(n) and (small or self._waiting[0] is me)):
                    self._cv.wait()
            finally:
                self._waiting.remove(me)
                self._cv.notify_all()  # the next in line may fit too
            self.used += n
            self.peak = max(self.peak, self.used)
            return n

    def release(self, n: int) -> None:
        n = max(0, int(n))
        with self._cv:
            self.used = max(0, self.used - n)
            if self._waiting:
                self._cv.notify_all()

    @contextmanager
    def hold(self, n: int) -> Iterator[int]:
        n = self.acquire(n)
        try:
            yield n
        finally:
            self.release(n)

    def set_limit(self, limit: int) -> None:
        with self._cv:
            self.limit = max(1, int(limit))
            self._cv.notify_all()


DECODE = PixelBudget()  # the process's budget for decoding images (the app: Settings.decode_budget_mb)


def configure(limit_bytes: int) -> None:
    """Set the process's decode budget (from Settings when the app or a worker starts)."""
    DECODE.set_limit(limit_bytes)
