"""Progress of long offline operations on stderr (bytes done, rate), only when stderr is a
terminal: a log file or a pipe gets the log lines and nothing else, as with etcdutl.

One line per phase, redrawn in place (carriage return) at most every `interval` seconds and
finished with a newline and the totals when the phase ends.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from petcd.utl.printer import human_bytes


class Progress:
    """Progress of one phase: `update(done)` with the bytes done so far, then `finish()`."""

    def __init__(
        self,
        what: str,
        total: int | None = None,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        interval: float = 0.5,
        enabled: bool | None = None,
        items_name: str = "keys",
    ) -> None:
        self.what = what
        self.total = total
        self.items_name = items_name
        self._stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self._interval = interval
        self.enabled = self._stream.isatty() if enabled is None else enabled
        self._start = clock()
        self._last_draw = self._start
        self.done = 0
        self.items = 0
        self._width = 0

    def update(self, done: int, items: int = 0) -> None:
        """Bytes (and, where it means something, items such as keys: `items_name`) done so far."""
        self.done = done
        self.items = items
        if not self.enabled:
            return
        now = self._clock()
        if now - self._last_draw >= self._interval:
            self._last_draw = now
            self._draw(now, final=False)

    def finish(self) -> None:
        if self.enabled:
            self._draw(self._clock(), final=True)

    def line(self, now: float) -> str:
        took = max(now - self._start, 1e-9)
        parts = [human_bytes(self.done)]
        if self.total:
            parts[0] += f" / {human_bytes(self.total)} ({min(100, self.done * 100 // self.total)}%)"
        if self.items:
            parts.append(f"{self.items} {self.items_name}")
        parts.append(f"{human_bytes(int(self.done / took))}/s")
        return f"{self.what}: {', '.join(parts)}, {took:.1f}s"

    def _draw(self, now: float, final: bool) -> None:
        text = self.line(now)
        pad = " " * max(0, self._width - len(text))
        self._width = len(text)
        self._stream.write("\r" + text + pad + ("\n" if final else ""))
        self._stream.flush()
