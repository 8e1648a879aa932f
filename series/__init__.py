"""The EPLB prefill fast-path series for a vLLM fork.

`series` lists the patches in the order they apply. Each patch module holds
its commit metadata (SUBJECT, BODY, ORIGIN, APPLIED_UPSTREAM, DATE) and an
`apply(tree)` written in the edit vocabulary of `eplb_fork.codemod`.
"""

# Who signs the series off (DCO `Signed-off-by:`) and authors its commits.
AUTHOR_NAME = "vLLM EPLB fork maintainers"
AUTHOR_EMAIL = "eplb-fork@users.noreply.github.com"
