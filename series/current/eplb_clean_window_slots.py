"""The shared recording flag starts set (`torch.ones`), whatever the
recording rule says for the first step, and expert_load_pass is zeroed only
on steps that record. vLLM starts the rearrangement counter at
step_interval - step_interval // 4, so when step_interval // 4 exceeds
window_size (PR #36261's own 100/10, or 3000/500) the first forward runs
outside the window with the flag set: its load stays in the pass and lands
in window slot 0 with the first recorded step's. A profile run's dummy
routing, recorded with the flag set, does the same.

The flag now starts from the rule for the first step, and the profile
step drops the pass before its dummy rearrangement (0.33 already drops a
dummy step's pass before that point; 0.31 and 0.32 do not). The defaults
(3000/1000) put the first forward inside the window, where it is meant to
count, and are unchanged. Found and fixed on the 0.19 backport of the PR;
this is the same change on upstream's `_propagate_shared_tensors`.
"""

from eplb_fork.codemod import bring_file
from series.shared.window_slots import fix_window_slots

SUBJECT = "[EPLB] Keep every load window slot to its own step"
ORIGIN = "vendor"
DATE = "2026-11-30T07:20:00+00:00"


def apply(tree):
    fix_window_slots(tree, "EplbState._propagate_shared_tensors")
    bring_file(tree, "tests/distributed/eplb/eplb_single_rank.py")
    bring_file(tree, "tests/distributed/eplb/test_eplb_window_slots.py")
