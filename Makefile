# The two commands: `make fork` (base -> series -> build/fork, build/patches,
# installed .venv) and `make test` (engine tests + the fork's tests for our
# patches, against the installed fork). See README.md.

PYTHON ?= python3
BASE ?=
TREE ?=
BRANCH ?= eplb-fastpath
# Downloads (sdist, 433 MB wheel) are verified and reused from here.
EPLB_CACHE ?= $(CURDIR)/.cache
export EPLB_CACHE

ENGINE_VENV := .venv-engine
# The default base builds build/fork into .venv; another (BASE=0.34.0) gets
# its own build/fork-<base>, build/patches-<base> and .venv-<base>.
FORK := build/fork$(if $(BASE),-$(BASE))
PATCHES := build/patches$(if $(BASE),-$(BASE))
VENV := .venv$(if $(BASE),-$(BASE))
ENGINE := $(ENGINE_VENV)/bin/python -m eplb_fork $(if $(BASE),--base $(BASE)) \
	--fork $(FORK) --patches $(PATCHES) --venv $(VENV)
# What the engine knows (the fork's version and base tag, the bases to test,
# the files a span of commits touches, a patch's commit), asked from any
# directory: recipes ask inside fork checkouts.
ASK_ANY := PYTHONPATH=$(CURDIR) $(CURDIR)/$(ENGINE_VENV)/bin/python -m eplb_fork
ASK := $(ASK_ANY) $(if $(BASE),--base $(BASE)) --fork $(abspath $(FORK))
FORK_PYTHON := $(CURDIR)/$(VENV)/bin/python
# Upstream tests the series edits that need CUDA and vLLM's compiled ops:
# collected here (imports, parametrization), run on GPU machines.
CUDA_ONLY_TESTS := tests/kernels/moe/test_routing.py
# Kernel tests run on CPU tensors under Triton's interpreter; an empty
# CUDA_VISIBLE_DEVICES keeps vLLM from disabling Triton on a GPU-less box.
FORK_TEST_ENV := TRITON_INTERPRET=1 CUDA_VISIBLE_DEVICES=
RUFF := $(CURDIR)/$(ENGINE_VENV)/bin/ruff

# Shell snippets for a recipe run inside a fork checkout: the files the
# commits $(1)..$(2) add or edit ($(3): --python for the Python files), the
# test files among them that run on CPU, and the fork's own ruff on files
# $(1) (ruff pinned as in the fork's pre-commit config).
touched = $$($(ASK) touched --tree . $(3) $(1) $(2))
cpu_tests = $(call touched,$(1),$(2),--tests $(addprefix --skip ,$(CUDA_ONLY_TESTS)))
fork_ruff = $(RUFF) check --no-cache -q $(1) && $(RUFF) format --no-cache --check -q $(1)
BASE_TAG := $$($(ASK) info base-tag)
# Every commit from the base tag to HEAD of fork $(1), as a reviewer
# bisecting meets it, in a clone at $(2) ($(3): the engine asked about that
# fork; $(4): the Python of its installed venv, whose compiled extensions
# the clone borrows): the files it touches pass the fork's ruff and
# byte-compile, and the tests it adds or edits pass at that commit.
define bisect_commits
	rm -rf $(2) && git clone -q $(1) $(2)
	cp $(1)/vllm/*.so $(1)/vllm/_version.py $(2)/vllm/
	cd $(2) && tag=$$($(3) info base-tag) && for c in $$(git rev-list --reverse $$tag..HEAD); do \
	  git checkout -q $$c && echo "== $$(git log -1 --format=%s)" && \
	  files=$(call touched,$$c~1,$$c,--python) && $(call fork_ruff,$$files) && \
	    $(CURDIR)/$(ENGINE_VENV)/bin/python -m py_compile $$files || exit 1; \
	  tests=$(call cpu_tests,$$c~1,$$c); \
	  if [ -n "$$tests" ]; then \
	    PYTHONPATH=$$PWD $(FORK_TEST_ENV) $(4) -m pytest -q -p no:cacheprovider $$tests \
	      > $(CURDIR)/$(2).log 2>&1 || { tail -30 $(CURDIR)/$(2).log; exit 1; }; \
	    tail -1 $(CURDIR)/$(2).log; fi; \
	done
endef

.PHONY: fork patches changelog apply install test test-current test-bases fork-heads test-drift test-roundtrip test-bisect bench-smoke test-engine test-fork lint-engine lint-fork gpu-bundle engine wheel test-wheel

fork: engine
	$(ENGINE) fork --install

patches: engine
	$(ENGINE) patches

install: engine
	$(ENGINE) install

# A wheel of build/fork's HEAD (version 0.19.1+eplb.N) with vLLM's precompiled
# extensions, nothing compiled, for `pip install build/wheel/vllm-*.whl` on a
# GPU box. Builds in .venv (its CUDA torch), offline with the cached wheel.
wheel: engine
	$(ENGINE) wheel

# The README's series tables, regenerated from each line's series file.
changelog: engine
	$(ENGINE) changelog

apply: engine
	@test -n "$(TREE)" || { echo "usage: make apply TREE=/path/to/vllm [BRANCH=$(BRANCH)]"; exit 2; }
	$(ENGINE) apply --tree "$(TREE)" --branch "$(BRANCH)"

test: test-engine lint-fork test-bases test-drift test-roundtrip test-bisect bench-smoke test-wheel demo-smoke test-standalone test-fork

# A fork that drifted (reformatted at 100 columns, methods added, fields
# reordered, a comment edited; eplb_fork/drift.py): the series still applies
# with `make apply`, compiles, and every test the series brings or edits
# passes on the result.
test-drift: engine
	rm -rf build/drift && git clone -q --branch $(BASE_TAG) $(FORK) build/drift
	cd build/drift && git checkout -q -b fork-main && \
	  git -c user.name=drift -c user.email=drift@example.org commit -q --allow-empty -m "fork: start"
	$(ENGINE_VENV)/bin/python -m eplb_fork.drift build/drift
	cd build/drift && git -c user.name=drift -c user.email=drift@example.org commit -qam "fork: local changes"
	$(ENGINE) apply --tree build/drift --branch eplb-fastpath
	cd build/drift && $(CURDIR)/$(ENGINE_VENV)/bin/python -m py_compile \
	  $(call touched,fork-main,eplb-fastpath,--python)
	# The drifted tree runs on the installed fork's compiled extensions.
	cp $(FORK)/vllm/*.so $(FORK)/vllm/_version.py build/drift/vllm/
	cd build/drift && tests=$(call cpu_tests,fork-main,eplb-fastpath) && \
	  PYTHONPATH=$$PWD $(FORK_TEST_ENV) $(FORK_PYTHON) -m pytest -q -p no:cacheprovider $$tests \
	    > $(CURDIR)/build/drift-tests.log 2>&1; \
	  status=$$?; tail -1 $(CURDIR)/build/drift-tests.log; exit $$status

# Every commit of the series as a reviewer bisecting meets it: the files it
# touches pass the fork's ruff and byte-compile, and the tests it adds or
# edits pass at that commit (on the installed fork's compiled extensions).
test-bisect: engine
	$(call bisect_commits,$(FORK),build/bisect,$(ASK),$(FORK_PYTHON))

# What goes to review reproduces the fork: `git am` of the numbered patches
# in build/patches (not the cover letter) on the base gives HEAD's tree.
REVIEW_PATCHES = $(filter-out %/0000-cover-letter.patch,$(wildcard $(abspath $(PATCHES))/*.patch))
test-roundtrip: engine
	@$(if $(REVIEW_PATCHES),true,echo "no patches in $(PATCHES): make patches"; exit 2)
	rm -rf build/am-check && git clone -q --branch $(BASE_TAG) $(FORK) build/am-check
	@echo "git am the $(words $(REVIEW_PATCHES)) numbered patches of $(PATCHES) in build/am-check"
	@cd build/am-check && git -c user.name=am -c user.email=am@example.org am -q $(REVIEW_PATCHES)
	test "$$(git -C build/am-check rev-parse 'HEAD^{tree}')" = "$$(git -C $(FORK) rev-parse 'HEAD^{tree}')"
	@echo "git am of $(PATCHES) reproduces $(FORK)'s tree"

# Every other pinned release some line is for (`info bases`: each line's
# releases, eplb_fork/series.py's Line), built under build/bases/ so that
# `make fork BASE=x`'s build/fork-x and its venv stay as they are: the
# base's line applies as commits (no install), byte-compiles, and every
# touched file passes that release's own ruff (as its pre-commit pins it,
# its pyproject's config). Patches a release already ships are reported
# upstream and skipped (the current line's padding backport from 0.25.0).
FORK_HEADS := series/fork-heads.txt
test-bases: engine
	@rm -f build/fork-heads.txt; for v in $$($(ASK) info bases); do \
	  echo "== base $$v"; \
	  $(ENGINE_VENV)/bin/python -m eplb_fork --base $$v --fork build/bases/fork-$$v \
	    --patches build/bases/patches-$$v fork > build/base-$$v.log 2>&1 \
	    || { grep -v "^    " build/base-$$v.log; exit 1; }; \
	  grep -E "^series:|^  [0-9a-f]+ applied" build/base-$$v.log; \
	  (cd build/bases/fork-$$v && tag=$$($(ASK_ANY) --base $$v info base-tag) && \
	    files=$(call touched,$$tag,HEAD,--python) && $(call fork_ruff,$$files) && \
	    $(CURDIR)/$(ENGINE_VENV)/bin/python -m py_compile $$files) || exit 1; \
	  echo "$$v $$(git -C build/bases/fork-$$v rev-parse HEAD)" >> build/fork-heads.txt; \
	done
	@# The forks are the same commits, byte for byte, as $(FORK_HEADS) records:
	@# a change to the engine leaves them be; a change to a patch changes them
	@# on purpose, and `make fork-heads` records the new ones with it.
	@grep -v "^#" $(FORK_HEADS) | diff - build/fork-heads.txt > build/fork-heads.diff \
	  || { echo "fork commits differ from $(FORK_HEADS) (< recorded, > now):"; \
	       cat build/fork-heads.diff; echo "intended? make fork-heads"; exit 1; }
	@echo "fork commits on $$(wc -l < build/fork-heads.txt) bases as $(FORK_HEADS) records"

# Records the fork commits test-bases made (run it after test-bases, with
# the patch change that moved them).
fork-heads:
	@test -f build/fork-heads.txt || { echo "no build/fork-heads.txt: make test-bases"; exit 2; }
	{ echo "# base, HEAD of its fork after its line (make test-bases checks, make fork-heads writes)"; \
	  cat build/fork-heads.txt; } > $(FORK_HEADS)

# The benchmark's CPU mode under the interpreter: it runs, nothing is timed.
# The layer benchmark's smoke run checks the load each revision records.
bench-smoke:
	cd $(FORK) && $(FORK_TEST_ENV) $(FORK_PYTHON) benchmarks/kernels/benchmark_eplb_map_record.py \
	  --smoke > $(CURDIR)/build/bench-smoke.txt && tail -3 $(CURDIR)/build/bench-smoke.txt
	cd $(FORK) && $(FORK_TEST_ENV) $(FORK_PYTHON) benchmarks/kernels/benchmark_eplb_moe_layer.py \
	  --smoke > $(CURDIR)/build/bench-layer-smoke.txt && tail -2 $(CURDIR)/build/bench-layer-smoke.txt

# The EPLB demo (package eplb_demo): the installed fork's recording gate,
# map+record kernel (Triton interpreter, CPU tensors) and default rebalance
# policy on skewed synthetic MoE load, checked against the demo's own counts;
# writes summary.txt and eplb_demo.png to build/demo. demo-smoke is its short
# mode (3 rearrangements, well under a minute) and fails on a failed check.
.PHONY: demo demo-smoke
DEMO := $(FORK_TEST_ENV) $(FORK_PYTHON) -m eplb_demo
demo: .venv/.demo-installed
	$(DEMO)

demo-smoke: .venv/.demo-installed
	$(DEMO) --short --out-dir build/demo-smoke > build/demo-smoke.log 2>&1 \
	  || { cat build/demo-smoke.log; exit 1; }
	sed -n '/^== summary/,$$p' build/demo-smoke.log

# matplotlib for the demo's plot, into the fork's venv (gone with it).
.venv/.demo-installed: requirements/demo.txt
	@test -x $(FORK_PYTHON) || { echo "no installed fork: run 'make fork' first"; exit 2; }
	$(FORK_PYTHON) -m pip install --quiet --progress-bar off -r requirements/demo.txt
	touch $@

# The engine, the series and the demo under this repo's ruff; the fragments
# (code that lands inside vLLM files) under the fork's own ruff config, with
# vllm first-party as it is inside the fork.
lint-engine: engine
	$(RUFF) check --no-cache eplb_fork series eplb_demo
	$(RUFF) format --no-cache --check eplb_fork series eplb_demo
	@test -f $(FORK)/pyproject.toml || { echo "no fork to take ruff's config from: make fork"; exit 2; }
	$(RUFF) check --no-cache --config $(FORK)/pyproject.toml \
	  --config 'lint.isort.known-first-party=["vllm"]' series/*/fragments

test-engine: lint-engine
	$(ENGINE_VENV)/bin/python -m pytest -q eplb_fork/tests

# Every test file the series adds or edits, against the installed fork.
test-fork: engine
	@test -x $(FORK_PYTHON) || { echo "no installed fork: run 'make fork' first"; exit 2; }
	cd $(FORK) && tests=$(call cpu_tests,$(BASE_TAG),HEAD) && \
	  $(FORK_TEST_ENV) $(FORK_PYTHON) -m pytest -q -p no:cacheprovider --collect-only $(CUDA_ONLY_TESTS) | tail -1 && \
	  $(FORK_TEST_ENV) $(FORK_PYTHON) -m pytest -q -p no:cacheprovider $$tests

# The wheel as a GPU box installs it: `pip install` of the file alone in a
# fresh venv, its requirements resolved from the index; the modules the
# series patches import from that venv at the series' version. The venv
# starts with torch's CUDA stack (torch, triton, nvidia-*: 7 GB, the exact
# torch vLLM pins) hard-linked from .venv, as a GPU box has it already:
# without it the check needs 11 GB more disk. (Re)builds the wheel when
# build/wheel is not of build/fork's HEAD.
WHEEL_VENV := build/wheel-venv
WHEEL_VENV_FREE_GB := 8
test-wheel: engine
	@test "$$(cat build/wheel/fork-head 2>/dev/null)" = "$$(git -C $(FORK) rev-parse HEAD 2>/dev/null)" \
	  || { echo "build/wheel is not of build/fork's HEAD: make wheel"; $(MAKE) --no-print-directory wheel; }
	rm -rf $(WHEEL_VENV)
	@free=$$(df -Pk build | awk 'NR == 2 { print int($$4 / 1048576) }'); \
	  test "$$free" -ge $(WHEEL_VENV_FREE_GB) || { \
	    echo "test-wheel needs about $(WHEEL_VENV_FREE_GB) GB free under build/; $$free GB are"; exit 1; }
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(ENGINE) link --into $(WHEEL_VENV) torch
	$(WHEEL_VENV)/bin/pip install --progress-bar off build/wheel/vllm-*.whl > build/wheel-venv.log 2>&1 \
	  || { tail -20 build/wheel-venv.log; exit 1; }
	@echo "pip installed $$(ls build/wheel/vllm-*.whl) and $$(($$(grep '^Successfully installed' \
	  build/wheel-venv.log | wc -w) - 3)) requirements"
	$(WHEEL_VENV)/bin/pip check
	cd build && version=$$($(ASK) info version) && \
	  CUDA_VISIBLE_DEVICES= $(CURDIR)/$(WHEEL_VENV)/bin/python -I $(CURDIR)/eplb_fork/wheel_check.py $$version
	rm -rf $(WHEEL_VENV)

# Upstream's checks: every Python file the series touches passes the fork's
# own ruff configuration.
lint-fork: engine
	cd $(FORK) && files=$(call touched,$(BASE_TAG),HEAD,--python) && $(call fork_ruff,$$files) && \
	  echo "fork ruff: $$(echo $$files | wc -w) files clean"

# What the GPU machine needs to run a fork's kernel tests and benchmarks
# without vLLM (eplb_fork/gpu_bundle.py; gpu-results/gpu-run.sh runs them):
# build/gpu/<release>/ for the fork's release (build/fork, or BASE's) and each
# in GPU_BASES, whose forks are test-bases' (made here if missing). Its line
# says which router revisions and benchmarks (series/<line>/__init__.py).
GPU_BASES ?= $(CURRENT_BASE) 0.26.0 0.24.0
gpu-bundle: engine
	@test -d $(FORK)/.git || { echo "no fork at $(FORK): run 'make fork' first"; exit 2; }
	@rm -rf build/gpu && own=$$($(ASK) info release) && seen= && \
	for v in $$own $(GPU_BASES); do \
	  case " $$seen " in *" $$v "*) continue;; esac; seen="$$seen $$v"; \
	  fork=$$(if [ $$v = $$own ]; then echo $(FORK); else echo build/bases/fork-$$v; fi); \
	  test -d $$fork || $(ENGINE_VENV)/bin/python -m eplb_fork --base $$v --fork $$fork \
	    --patches build/bases/patches-$$v fork > build/base-$$v.log 2>&1 \
	    || { grep -v "^    " build/base-$$v.log; exit 1; }; \
	  $(ASK_ANY) --base $$v --fork $(CURDIR)/$$fork gpu-bundle --dest build/gpu/$$v || exit 1; \
	done

# The bundle through eplb_fork.gpu_standalone, on CPU under the interpreter:
# it computes what the installed fork computes, its stand-ins answer as vLLM
# does, its kernel tests and benchmark smoke runs pass as on the GPU machine.
.PHONY: test-standalone
test-standalone: gpu-bundle
	@test -x $(FORK_PYTHON) || { echo "no installed fork: run 'make fork' first"; exit 2; }
	$(FORK_TEST_ENV) EPLB_GPU_BUNDLE=build/gpu/$$($(ASK) info release) $(FORK_PYTHON) -m pytest -q -p no:cacheprovider \
	  eplb_fork/fork_venv_tests

# The current line (series/current, our follow-ups on upstream's own code)
# installed: test-current (its own target, as it installs a second vLLM:
# torch 2.14, about 10 GB; CI runs it after `make test`) builds the newest
# release as `make fork BASE=$(CURRENT_BASE)` does, and runs the line's
# tests there on CPU, the kernels under Triton's interpreter, at HEAD and at
# every commit. test-bases applies, compiles and lints it on every release.
CURRENT_BASE := 0.34.0
CURRENT_FORK := build/fork-$(CURRENT_BASE)
CURRENT_ASK := $(ASK_ANY) --base $(CURRENT_BASE) --fork $(abspath $(CURRENT_FORK))

test-current: engine
	$(MAKE) --no-print-directory fork BASE=$(CURRENT_BASE)
	cd $(CURRENT_FORK) && tag=$$($(CURRENT_ASK) info base-tag) && \
	  files=$$($(CURRENT_ASK) touched --tree . --python $$tag HEAD) && $(call fork_ruff,$$files) && \
	  echo "$(CURRENT_BASE) fork ruff: $$(echo $$files | wc -w) files clean" && \
	  tests=$$($(CURRENT_ASK) touched --tree . --tests $$tag HEAD) && \
	  $(FORK_TEST_ENV) $(CURDIR)/.venv-$(CURRENT_BASE)/bin/python -m pytest -q -p no:cacheprovider $$tests
	# Every commit as a reviewer bisecting meets it, as test-bisect does.
	$(call bisect_commits,$(CURRENT_FORK),build/bisect-current,$(CURRENT_ASK),$(CURDIR)/.venv-$(CURRENT_BASE)/bin/python)

engine: $(ENGINE_VENV)/.installed

$(ENGINE_VENV)/.installed: requirements/engine.txt
	$(PYTHON) -m venv $(ENGINE_VENV)
	$(ENGINE_VENV)/bin/pip install --quiet -r requirements/engine.txt 2>&1 | grep -v "is ignored: it is neither" || true
	$(ENGINE_VENV)/bin/python -c "import libcst, pytest"
	touch $@

# The serving harness's bundle (gpu-results/serving/): the fork on vLLM
# $(SERVING_BASE) (torch 2.11, the GPU machine's own) as the Python files the
# current line changes, laid over upstream's installed wheel there (what the
# precompiled install does); the wheel and the dependency wheels the machine
# lacks, split into carry folders by shared/tools/device-vllm/prepare.
SERVING_BASE ?= 0.26.0
SERVING_FORK := build/bases/fork-$(SERVING_BASE)
.PHONY: serving-bundle
serving-bundle: engine
	test -d $(SERVING_FORK) || $(ENGINE_VENV)/bin/python -m eplb_fork --base $(SERVING_BASE) \
	  --fork $(SERVING_FORK) --patches build/bases/patches-$(SERVING_BASE) fork
	rm -rf build/serving && mkdir -p build/serving/overlay && echo $(SERVING_BASE) > build/serving/BASE
	cd $(SERVING_FORK) && tag=$$($(ASK_ANY) --base $(SERVING_BASE) info base-tag) && \
	  for f in $$($(ASK_ANY) --base $(SERVING_BASE) touched --tree . --python $$tag HEAD | grep ^vllm/); do \
	    install -D -m 644 $$f $(CURDIR)/build/serving/overlay/$$f || exit 1; done
	git -C $(SERVING_FORK) log --format='%h %s' $$($(ASK_ANY) --base $(SERVING_BASE) info base-tag)..HEAD \
	  > build/serving/overlay/SERIES
	test -d .big/vllm-$(SERVING_BASE)/c0 || \
	  bash ../shared/tools/device-vllm/prepare $(SERVING_BASE) .big/vllm-$(SERVING_BASE)
	# The wheel's checksum as requirements/base.toml pins it (what the device
	# checks the reassembled wheel against), checked here on the download.
	$(PYTHON) -c "import tomllib; r = tomllib.load(open('requirements/base.toml', 'rb'))\
	  ['releases']['$(SERVING_BASE)']; print(r['wheel_sha256'] + '  ' + r['wheel'])" \
	  > .big/vllm-$(SERVING_BASE)/WHEEL.sha256
	cd .big/vllm-$(SERVING_BASE)/.dl && sha256sum -c ../WHEEL.sha256
	# A carry call holds the tracked tree too (4 MB and growing), so prepare's
	# 60 MB chunks no longer fit its 64 MiB: the wheel again in 48 MiB ones,
	# w00, w01, ... (run.sh joins part* in name order).
	cd .big/vllm-$(SERVING_BASE) && rm -rf w[0-9]* && \
	  split -b 48M -d -a 2 .dl/$$(awk '{print $$2}' WHEEL.sha256) part && \
	  for f in part[0-9][0-9]; do mkdir w$${f#part} && mv $$f w$${f#part}/; done
	@echo "carry build/serving and .big/vllm-$(SERVING_BASE)/{w*,deps*}: gpu-results/serving/README.md"
