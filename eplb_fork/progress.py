"""Progress for long steps, readable in a terminal and in a CI log."""

from __future__ import annotations

import sys
import time


class Meter:
    """Byte meter: redraws in place on a terminal, prints every 10% otherwise."""

    def __init__(self, label: str, total: int) -> None:
        self.label = label
        self.total = total
        self.started = time.monotonic()
        self.last_decile = -1
        self.tty = sys.stderr.isatty()

    def __enter__(self) -> Meter:
        return self

    def update(self, done: int) -> None:
        mb = done / 1e6
        if not self.total:
            if self.tty:
                sys.stderr.write(f"\r{self.label}: {mb:.1f} MB")
            return
        fraction = done / self.total
        decile = int(fraction * 10)
        if self.tty:
            sys.stderr.write(f"\r{self.label}: {mb:.1f} MB ({fraction:.0%})")
        elif decile != self.last_decile:
            sys.stderr.write(f"{self.label}: {fraction:.0%}\n")
        self.last_decile = decile

    def __exit__(self, *exc: object) -> None:
        elapsed = time.monotonic() - self.started
        if self.tty:
            sys.stderr.write("\n")
        sys.stderr.write(f"{self.label}: done in {elapsed:.1f}s\n")
