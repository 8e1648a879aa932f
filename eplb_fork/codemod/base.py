"""What every edit may raise, and the tree it edits."""

from __future__ import annotations

from typing import Protocol

from eplb_fork import EngineError


class AnchorMissing(EngineError):
    def __init__(self, anchor: str, path: str) -> None:
        super().__init__(f"{anchor} not found in {path}")
        self.anchor = anchor
        self.path = path


class Conflict(EngineError):
    """The target already holds something else where the patch would write."""


class Tree(Protocol):
    def exists(self, path: str) -> bool: ...
    def read(self, path: str) -> str: ...
    def write(self, path: str, text: str) -> None: ...
