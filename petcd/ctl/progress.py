"""The progress bar etcdctl 3.5's ``check perf`` and ``check datascale`` draw (cheggaaa/pb v1.0.28,
format ``Bom !``), re-implemented: the same text, the same refresh rhythm.

What that library does, and so what this does: every 200 ms (and once at the start) it writes
``"\\r" + line`` to stdout, whether or not stdout is a terminal; the line is the counters
(`` 12 / 60 ``), the bar, the percentage and the estimated time left, padded to the width of the
controlling terminal (``/dev/tty``). Without a controlling terminal the width is 0: no bar, only
the counters, percentage and time. ``finish()`` writes the line a last time with the elapsed
time instead of the time left, then a newline.

``render`` is pure (times are passed in, as integer nanoseconds like Go's ``time.Duration``), so
the text can be tested without waiting; ``Bar`` runs it on a thread with an injected clock.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
import unicodedata
from collections.abc import Callable

SECOND = 1_000_000_000
REFRESH = 0.2  # seconds between redraws (the library's default refresh rate)
BAR_START, CURRENT, CURRENT_N, EMPTY, BAR_END = "B", "o", "m", " ", "!"  # etcdctl's Format("Bom !")


def text_width(text: str) -> int:
    """Terminal cells the text takes (wide East Asian characters count twice, as go-runewidth)."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def go_duration_seconds(ns: int) -> str:
    """Go's Duration.String() of a whole number of seconds (``0s``, ``59s``, ``1m0s``, ``1h0m0s``)."""
    secs = ns // SECOND
    h, rem = divmod(secs, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}h{m}m{s}s"
    if m:
        return f"{m}m{s}s"
    return f"{s}s"


def time_left_text(ns: int) -> str:
    """The library's duration format for the time left: ``00m59s``, ``1h05m00s``, ``2d03h...``."""
    out = ""
    d = ns
    day, hour = 24 * 3600 * SECOND, 3600 * SECOND
    if d > day:
        out = f"{d // day}d"
        d -= (d // day) * day
    if d > hour:
        out += f"{d // hour}h"
        d -= (d // hour) * hour
    m, d = divmod(d, 60 * SECOND)
    return f"{out}{m:02d}m{d // SECOND:02d}s"


def _trunc_seconds(ns: int) -> int:
    """Go's ``(d / time.Second) * time.Second``: integer division truncates toward zero."""
    q = abs(ns) // SECOND * SECOND
    return q if ns >= 0 else -q


def render(total: int, current: int, *, width: int, start_value: int = 0, from_start: int = 0,
           from_change: int = 0, since_change: int = 0, finished: bool = False) -> str:
    """One line of the bar, without the leading carriage return.

    ``from_start``: now minus the start; ``from_change``: the last change of the count minus the
    start; ``since_change``: now minus the last change (all nanoseconds)."""
    if total > 0:
        percent = current / (total / 100)
    else:
        percent = current / 100
    percent_box = f" {percent:6.2f}%"
    counters = f" {current} / {total} " if total > 0 else f" {current} / ? "
    time_box = ""
    done_since_start = current - start_value
    if finished:
        time_box = " " + go_duration_seconds(_trunc_seconds(from_start))
    elif done_since_start > 0 and total > 0:
        per_entry = from_change // done_since_start
        left = _trunc_seconds((total - current) * per_entry - since_change)
        if left > 0:
            time_box = " " + time_left_text(left)
    bar = ""
    size = width - text_width(counters + BAR_START + BAR_END + percent_box + time_box)
    if size > 0:
        if total > 0:
            cur = math.ceil(current / total * size)
            empty = max(size - cur, 0)
            cur = min(cur, size)
            bar = BAR_START
            if empty <= 0:
                bar += CURRENT * cur
            elif cur > 0:
                bar += CURRENT * (cur - len(CURRENT_N)) + CURRENT_N
            bar += EMPTY * empty + BAR_END
        else:
            pos = size - current % size
            bar = BAR_START + EMPTY * max(pos - 1, 0) + CURRENT + EMPTY * max(size - pos - 1, 0) + BAR_END
    line = counters + bar + percent_box + time_box
    return line + " " * max(width - text_width(line), 0)


def tty_width() -> int:
    """Columns of the controlling terminal; 0 without one (the library reads /dev/tty, not stdout)."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return 0
    try:
        return os.get_terminal_size(fd).columns
    except OSError:
        return 0
    finally:
        os.close(fd)


def _stdout(text: str) -> None:
    # the byte layer, as petcdctl's other output (printer.out), so the two never reorder
    sys.stdout.flush()
    sys.stdout.buffer.write(text.encode())
    sys.stdout.buffer.flush()


class Bar:
    """A running bar: ``start()``, ``add()`` from any thread, then ``finish()`` (or ``stop()`` to quit
    drawing without the final line, as a program that exits under a running bar leaves it)."""

    def __init__(self, total: int, *, write: Callable[[str], None] = _stdout,
                 clock: Callable[[], int] = time.monotonic_ns, width: Callable[[], int] = tty_width,
                 refresh: float = REFRESH) -> None:
        self.total = total
        self.current = 0
        self._write = write
        self._clock = clock
        self._width = width
        self._refresh = refresh
        self._previous = 0
        self._start = self._change = clock()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._refresher, name="progress-bar", daemon=True)

    def start(self) -> Bar:
        self._start = self._change = self._clock()
        self.update()
        self._thread.start()
        return self

    def add(self, n: int = 1) -> None:
        with self._lock:
            self.current += n

    def _refresher(self) -> None:
        while not self._done.wait(self._refresh):
            self.update()

    def update(self) -> None:
        with self._lock:
            if self._finished:
                return
            if self.current != self._previous:
                self._change = self._clock()
                self._previous = self.current
            self._draw(finished=False)

    def _draw(self, *, finished: bool) -> None:
        now = self._clock()
        self._write("\r" + render(self.total, self.current, width=self._width(), from_start=now - self._start,
                                  from_change=self._change - self._start, since_change=now - self._change,
                                  finished=finished))

    def _halt(self) -> None:
        self._done.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def stop(self) -> None:
        self._halt()
        with self._lock:
            self._finished = True

    def finish(self) -> None:
        self._halt()
        with self._lock:
            if self._finished:
                return
            self._draw(finished=True)
            self._finished = True
        self._write("\n")
