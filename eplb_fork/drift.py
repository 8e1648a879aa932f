"""Make a base tree look like a fork that has lived a while, the ways forks
drift: files reformatted with another line length, unrelated methods added,
members reordered, a comment next to an anchor edited. The series must still
apply to such a tree (`make test-drift`).

    python -m eplb_fork.drift TREE     # edits TREE's worktree in place
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from eplb_fork.fork_files import BASE_ROUTER, EPLB_STATE, PARALLEL_CONFIG

FORK_METHOD = '''
    def fork_local_helper(self) -> int:
        """Something a fork added."""
        return 42
'''


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    if old not in text:
        raise SystemExit(f"drift: {old!r} not in {path}")
    path.write_text(text.replace(old, new, 1))


def drift(tree: Path) -> None:
    # Another formatter setting: every touched file re-wrapped at 100 columns.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "format",
            "--no-cache",
            "--line-length",
            "100",
            *(str(tree / f) for f in (EPLB_STATE, BASE_ROUTER, PARALLEL_CONFIG)),
        ],
        check=True,
        capture_output=True,
    )
    # Unrelated methods at the top of the classes the series edits.
    _edit(
        tree / EPLB_STATE,
        "    def __init__(self, parallel_config",
        FORK_METHOD.lstrip("\n") + "\n    def __init__(self, parallel_config",
    )
    _edit(
        tree / BASE_ROUTER,
        "    def set_capture_fn(",
        FORK_METHOD.lstrip("\n") + "\n    def set_capture_fn(",
    )
    # Members reordered: two EPLBConfig fields swap places.
    parallel = (tree / PARALLEL_CONFIG).read_text()
    window = '    window_size: int = 1000\n    """Window size for expert load recording."""\n'
    redundant = (
        "    num_redundant_experts: int = Field(default=0, ge=0)\n"
        '    """Number of redundant experts to use for expert parallelism."""\n'
    )
    if window not in parallel or redundant not in parallel:
        raise SystemExit("drift: EPLBConfig fields not where expected")
    parallel = parallel.replace(window, "@@WINDOW@@").replace(redundant, window)
    (tree / PARALLEL_CONFIG).write_text(parallel.replace("@@WINDOW@@", redundant))
    # A comment next to an anchor, edited.
    _edit(
        tree / EPLB_STATE,
        "        # Update the expert load sliding window\n",
        "        # fork: the sliding window of expert load is updated here\n",
    )


if __name__ == "__main__":
    drift(Path(sys.argv[1]))
