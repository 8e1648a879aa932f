"""EPLBConfig accepted window_size=0, step_interval=0 and
log_balancedness_interval=0 (and negatives). None of them is meaningful: a
zero window records nothing, so every rearrangement balances on an empty load
window; step_interval and log_balancedness_interval are used as moduli and
intervals, so zero divides by zero once recording is gated on them.

Declare the bound on the fields with Pydantic (gt=0). EPLBConfig(...),
ParallelConfig(eplb_config=...) and both CLI forms (--eplb-config JSON and
--eplb-config.window_size N) now reject the value at parse time with an error
that names the field.
"""

from eplb_fork.codemod import bring_file, constrain_field, python_file
from series.backport.sites import PARALLEL_CONFIG

SUBJECT = "[EPLB] Require positive window size and intervals"
ORIGIN = "backport, https://github.com/vllm-project/vllm/pull/36261"
APPLIED_UPSTREAM = "v0.20.0, https://github.com/vllm-project/vllm/pull/36261"
DATE = "2026-03-31T12:00:00+00:00"

POSITIVE_FIELDS = ("window_size", "step_interval", "log_balancedness_interval")


def apply(tree):
    with python_file(tree, PARALLEL_CONFIG) as src:
        for field in POSITIVE_FIELDS:
            constrain_field(src, f"EPLBConfig.{field}", gt=0)
    bring_file(tree, "tests/config/test_eplb_config_bounds.py")
