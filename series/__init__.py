"""The EPLB prefill fast-path series for a vLLM fork, as lines: `backport/`
(vLLM 0.19 and before) and `current/` (0.25 on), laid out alike, with what
both use in `shared/`.

In a line's folder, `series` lists the patches in the order they apply.
Each patch module's docstring is its commit body; the module holds the
rest of its commit metadata (SUBJECT, ORIGIN, APPLIED_UPSTREAM, DATE,
FIXES) and an `apply(tree)` written in the edit vocabulary of
`eplb_fork.codemod`. New code a patch puts inside an existing vLLM file
lives in the line's `fragments/` (or `shared/fragments/`), as real
modules; `sites` names the files and functions the line edits.
"""

# Who signs the series off (DCO `Signed-off-by:`) and authors its commits.
AUTHOR_NAME = "vLLM EPLB fork maintainers"
AUTHOR_EMAIL = "eplb-fork@users.noreply.github.com"
