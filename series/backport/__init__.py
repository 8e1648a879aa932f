"""The backport line: PR #36261 as it lays itself out on vLLM 0.19 and the
releases before it, then our follow-ups on it.

`series` lists the patches in order; new code a patch puts into an
existing vLLM file lives in `fragments/` (this line's) or
`../shared/fragments/` (both lines'); `sites` says where the line's bases
keep what the patches edit. The line runs up to the first release that
ships part of it (requirements/base.toml; the engine reads the bound from
the patches' APPLIED_UPSTREAM).
"""
