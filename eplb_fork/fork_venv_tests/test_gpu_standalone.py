"""gpu_standalone on CPU, next to the installed fork (`make test-standalone`:
the fork's venv, Triton's interpreter; the engine's venv has no torch).

The GPU machine has torch and Triton but no vLLM: gpu_standalone loads the
fork's router, runner and layer state from `make gpu-bundle`'s files onto
stand-ins for the rest of vLLM. Here that bundle is loaded the same way and
must compute what the installed fork computes (and what a torch reference
says); the stand-ins must answer what the loaded files ask as vLLM answers on
this machine. Then the bundle's kernel tests and the benchmarks' smoke runs
go as on the GPU machine, on CPU tensors: only what needs a GPU may skip.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import vllm.envs as fork_envs
import vllm.model_executor.layers.fused_moe.router.base_router as fork_router
import vllm.model_executor.layers.fused_moe.runner.default_moe_runner as fork_runner
from vllm.distributed.eplb.eplb_state import EplbLayerState
from vllm.platforms import current_platform

from eplb_fork import REPO_ROOT, gpu_standalone

BUNDLE = Path(os.environ.get("EPLB_GPU_BUNDLE", REPO_ROOT / "build" / "gpu")).resolve()
if os.environ.get("TRITON_INTERPRET") != "1" or torch.cuda.is_available():
    raise RuntimeError("CPU tensors under Triton's interpreter: run `make test-standalone`")


def vllm_modules() -> dict[str, object]:
    return {n: m for n, m in sys.modules.items() if n == "vllm" or n.startswith("vllm.")}


@pytest.fixture(scope="module")
def standalone() -> SimpleNamespace:
    """The bundle as gpu_standalone loads it, under a `vllm` of stand-ins of
    its own; the installed fork's modules are put back afterwards."""
    if not (BUNDLE / gpu_standalone.BASE_ROUTER).is_file():
        pytest.fail(f"no GPU bundle at {BUNDLE}: run `make gpu-bundle`")
    installed = vllm_modules()
    for name in installed:
        del sys.modules[name]
    try:
        router = gpu_standalone.install(BUNDLE)
        return SimpleNamespace(
            router=router,
            runner=sys.modules[fork_runner.__name__],
            layer_state=sys.modules["vllm.distributed.eplb.eplb_state"].EplbLayerState,
        )
    finally:
        for name in vllm_modules():
            del sys.modules[name]
        sys.modules.update(installed)


def test_the_bundle_is_loaded_not_the_installed_fork(standalone):
    assert Path(standalone.router.__file__) == BUNDLE / gpu_standalone.BASE_ROUTER
    assert standalone.router is not fork_router and standalone.runner is not fork_runner


# 10 logical experts on 16 slots: expert 0 has four replicas, 1 three, 2 two.
REPLICATED = list(range(10)) + [0, 0, 0, 1, 1, 2]
KERNEL_CASES = {
    "one replica each": dict(placement=list(range(8))),
    "replicas": dict(placement=REPLICATED),
    "ids out of range": dict(placement=REPLICATED, low=-2, high=12),
    "not recording": dict(placement=REPLICATED, record=False),
    "padded batch": dict(placement=REPLICATED, real=23),
    "a rank's block of a gather": dict(placement=REPLICATED, real=9, window=(11, 29, 2)),
    "int64 ids, int32 out": dict(placement=REPLICATED, ids=torch.int64, out=torch.int32),
}


def run_kernel(module, ids, placement, record=True, real=None, window=None, out=None):
    counts = torch.bincount(torch.tensor(placement))
    logical_to_physical = torch.full((len(counts), int(counts.max())), -1, dtype=torch.int64)
    for physical, logical in enumerate(placement):
        row = logical_to_physical[logical]
        row[int((row >= 0).sum())] = physical
    load = torch.zeros(len(placement), dtype=torch.int32)
    mapped = module.eplb_map_and_record_triton(
        ids, load, logical_to_physical, counts, torch.tensor(record),
        None if real is None else torch.tensor(real), counted_rows=window, out_dtype=out,
    )  # fmt: skip
    return mapped, load


@pytest.mark.parametrize("case", KERNEL_CASES.values(), ids=KERNEL_CASES.keys())
def test_map_and_record_as_the_installed_fork_and_torch(standalone, case):
    case = dict(case)
    low, high = case.pop("low", 0), case.pop("high", len(set(case["placement"])))
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(low, high, (37, 4), generator=generator, dtype=case.pop("ids", torch.int32))
    mapped, load = run_kernel(standalone.router, ids, **case)
    assert all(map(torch.equal, (mapped, load), run_kernel(fork_router, ids, **case)))

    placement = torch.tensor(case["placement"])
    valid = (ids >= 0) & (ids < len(placement.unique()))
    assert mapped.dtype == case.get("out", ids.dtype)
    assert torch.equal(mapped < 0, ~valid)
    assert torch.equal(placement[mapped[valid].long()], ids[valid].long())
    rows = torch.arange(len(ids))
    counted = torch.ones(len(ids), dtype=torch.bool)
    if case.get("real") is not None:
        first, end, shift = case.get("window") or (0, len(ids), 0)
        counted = (rows >= first) & (rows < end) & (rows - first + shift < case["real"])
    expected = torch.bincount(mapped[counted[:, None] & valid].long(), minlength=len(placement))
    if not case.get("record", True):
        expected.zero_()
    assert torch.equal(load.long(), expected)


def test_the_platform_picks_the_same_router_entry(standalone):
    for module in (standalone.router, fork_router):
        direct = module.eplb_map_to_physical_and_record is module.eplb_map_and_record_triton
        assert direct == current_platform.is_cuda_alike()


@pytest.mark.parametrize(
    "args", [(5, 0), (5, 3), (7, 2, [4, 5, 6], 0), (7, 2, [4, 5, 6], 2), (3, 6, [3, 3, 4, 4], 3)]
)
def test_the_runner_windows_rows_as_the_installed_fork(standalone, args):
    assert standalone.runner.eplb_counted_rows(*args) == fork_runner.eplb_counted_rows(*args)


def test_the_runner_and_layer_state_are_the_forks_definitions(standalone):
    def members(cls: type) -> set[str]:
        return {n for n, v in vars(cls).items() if callable(v) or isinstance(v, property)}

    runner = standalone.runner.DefaultMoERunner
    assert members(runner) == members(fork_runner.DefaultMoERunner)

    def fields(cls: type) -> list[tuple[str, object]]:
        return [(f.name, f.default) for f in dataclasses.fields(cls)]

    assert fields(standalone.layer_state) == fields(EplbLayerState)


def names_read(prefix: str) -> set[str]:
    """`prefix.NAME` in every file of the bundle that gpu_standalone loads."""
    files = [BUNDLE / gpu_standalone.BASE_ROUTER, BUNDLE / gpu_standalone.DEFAULT_MOE_RUNNER]
    files += sorted((BUNDLE / "revisions").glob("*.py"))
    return {
        node.attr
        for path in files
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and ast.unparse(node.value) == prefix
    }


@pytest.mark.parametrize("value", [None, "0", "1", "300"])
def test_every_knob_read_is_parsed_as_vllm_envs_parses_it(monkeypatch, value):
    envs = gpu_standalone._Envs()
    knobs = names_read("envs")
    # Knobs of later releases (0.34's padding mask) are not in this vLLM;
    # every knob this bundle's files read is.
    here = {name for name in envs.KNOBS if hasattr(fork_envs, name)}
    assert knobs and knobs <= here
    for name in here:
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
        ours, vllms = getattr(envs, name), getattr(fork_envs, name)
        assert (type(ours), ours) == (type(vllms), vllms), name


def test_an_unknown_knob_is_refused_by_name():
    with pytest.raises(AttributeError, match="no VLLM_NEW_KNOB: add it to _Envs.KNOBS"):
        gpu_standalone._Envs().VLLM_NEW_KNOB  # noqa: B018


def test_the_platform_answers_what_the_files_ask_as_vllm_does_here():
    platform = gpu_standalone._Platform()
    asked = names_read("current_platform")
    assert {"is_cuda_alike", "is_cpu", "is_tpu"} <= asked
    for name in asked:
        ours, vllms = getattr(platform, name), getattr(current_platform, name)
        assert (ours() if callable(ours) else ours) == (vllms() if callable(vllms) else vllms)


@pytest.fixture(scope="module")
def run_in_bundle(tmp_path_factory):
    """A command as the GPU machine runs it in the bundle (gpu-results/README.md),
    with only `eplb_fork` added to the path: the bundle must carry every
    fork file the command needs."""
    path = tmp_path_factory.mktemp("path")
    (path / "eplb_fork").symlink_to(REPO_ROOT / "eplb_fork")
    env = {**os.environ, "PYTHONPATH": str(path), "EPLB_FORK": ".", "PYTHONDONTWRITEBYTECODE": "1"}

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, *args], cwd=BUNDLE, env=env, capture_output=True, text=True
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, output[-4000:]
        return output

    return run


def test_the_bundles_kernel_tests_pass_on_cpu(run_in_bundle):
    output = run_in_bundle(
        "-m", "pytest", "-p", "eplb_fork.gpu_standalone", "-p", "no:cacheprovider",
        "--noconftest", "--import-mode=importlib", "--rootdir=.", "-c", os.devnull,
        "-q", "-rs", *sorted(str(p.relative_to(BUNDLE)) for p in BUNDLE.glob("tests/**/test_*.py")),
    )  # fmt: skip
    assert int(re.search(r"(\d+) passed", output).group(1)) >= 50
    skips = re.findall(r"^SKIPPED \[\d+\] (\S+): (.*)$", output, re.MULTILINE)
    assert all("GPU" in reason for _, reason in skips), skips


@pytest.mark.parametrize("script", ["benchmark_eplb_map_record.py", "benchmark_eplb_moe_layer.py"])
def test_the_benchmarks_smoke_runs_load_every_revision(run_in_bundle, script):
    revisions = sorted((BUNDLE / "revisions").glob("*.py"))
    output = run_in_bundle(
        "-m", "eplb_fork.gpu_standalone", f"benchmarks/kernels/{script}", "--smoke",
        *(f"--revision={p.stem}=revisions/{p.name}" for p in revisions),
    )  # fmt: skip
    for revision in revisions:
        assert re.search(rf"\b{revision.stem}\b", output), revision.stem
