"""Progress for long steps, readable in a terminal and in a CI log.

Standard library only: the demo imports it into the fork's venv.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def megabytes(count: int) -> str:
    return f"{count / 1e6:.1f} MB"


class Meter:
    """Counts up to `total`: on a terminal one line on stderr, redrawn in
    place; in a log (CI) a line every 10%. Output printed through `write`
    goes above the line."""

    def __init__(self, label: str, total: int, show: Callable[[int], str] = megabytes) -> None:
        self.label = label
        self.total = total
        self.show = show
        self.started = time.monotonic()
        self.last_decile = -1
        self.tty = sys.stderr.isatty()
        self.drawn = ""  # the line on the terminal now, to redraw after `write`

    def __enter__(self) -> Meter:
        return self

    def update(self, done: int) -> None:
        if not self.total:
            self._draw(f"{self.label}: {self.show(done)}")
            return
        fraction = done / self.total
        decile = int(fraction * 10)
        self._draw(f"{self.label}: {self.show(done)} ({fraction:.0%})")
        if not self.tty and decile != self.last_decile:
            sys.stderr.write(f"{self.label}: {fraction:.0%}\n")
        self.last_decile = decile

    def _draw(self, line: str) -> None:
        if self.tty:
            sys.stderr.write(f"\r{line}")
            self.drawn = line

    def write(self, line: str) -> None:
        """A line of output on stdout, above the meter's line."""
        if self.drawn:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
        print(line, flush=True)
        if self.drawn:
            sys.stderr.write(f"\r{self.drawn}")

    def __exit__(self, *exc: object) -> None:
        elapsed = time.monotonic() - self.started
        if self.drawn:
            sys.stderr.write("\n")
            self.drawn = ""
        sys.stderr.write(f"{self.label}: done in {elapsed:.1f}s\n")
