"""The engine: turns a base vLLM tree plus `series/` into a fork.

It fetches and verifies the base, applies each patch of the series as one git
commit (all in a scratch index, so a failing patch leaves the tree untouched),
exports the commits with `git format-patch`, and installs the fork.
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


class EngineError(Exception):
    """A refusal the user must act on; the CLI prints it without a traceback."""
