"""The shared record flag is allocated set, whatever the recording rule says,
and a step that does not record leaves the expert load pass as it is. vLLM
starts the rearrangement counter at step_interval - step_interval // 4, so
the first forward comes step_interval // 4 steps before the first
rearrangement. Where that is more than window_size (the PR's own validation
setting, step_interval 100 and window_size 10, or 3000 and 500), the first
forward lies outside the window yet records: step() neither copies nor
clears its pass, and its load is added to the first recorded slot, up to
hundreds of steps later. With the defaults (3000 and 1000) it comes 750
steps before the rearrangement, inside the window, and records on purpose.
A profile run's dummy load takes the same path when no dummy step clears it
(eager mode).

Allocate the flag with the rule's value for the first forward (log_stats as
the model runner passes it: eplb_config.log_balancedness), and clear the
pass on profile steps. The flag a forward sees is then always the decision
step() takes for it, so a non-recording forward leaves the pass empty and
each window slot holds exactly one step's load. The new test drives step()
at 100/10 and 3000/500 (the first forward records nothing, the first window
is exactly the last window_size forwards), at the defaults (the first
forward is in the window), through a profile run, and for random settings
checks after every step that the window is the load of the last
window_size recorded forwards.
"""

from eplb_fork.codemod import bring_file
from series.shared.window_slots import fix_window_slots

SUBJECT = "[EPLB] Keep every load window slot to its own step"
ORIGIN = "vendor"
DATE = "2026-11-29T12:00:00+00:00"
# The flag allocation and the pass handling this fixes came with PR #36261.
FIXES = "eplb_state_record_gate"


def apply(tree):
    fix_window_slots(tree, "EplbState._init_should_record_tensor")
    bring_file(tree, "tests/distributed/eplb/test_eplb_window_slots.py")
