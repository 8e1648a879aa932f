"""The EPLB prefill fast-path series for a vLLM fork.

`series` lists the patches in the order they apply. Each patch module's
docstring is its commit body; the module holds the rest of its commit
metadata (SUBJECT, ORIGIN, APPLIED_UPSTREAM, DATE) and an `apply(tree)`
written in the edit vocabulary of `eplb_fork.codemod`. New code a patch
puts inside an existing vLLM file lives in `fragments/`, as real modules.
"""

# Who signs the series off (DCO `Signed-off-by:`) and authors its commits.
AUTHOR_NAME = "vLLM EPLB fork maintainers"
AUTHOR_EMAIL = "eplb-fork@users.noreply.github.com"
