"""`make test-wheel`'s check, run by the python of a fresh venv that holds only
the fork's wheel and the requirements pip installed for it:

    python -I eplb_fork/wheel_check.py 0.19.1+eplb.N

(-I: nothing of this repo, PYTHONPATH or build/fork on sys.path). The modules
the series patches import from that venv's site-packages, at the series'
version, with the series' code and behaviour. Standard library and the
wheel's own packages only: the engine is not installed there.
"""

from __future__ import annotations

import importlib
import sys
import sysconfig
from pathlib import Path

PATCHED = (
    "vllm.config.parallel",
    "vllm.distributed.eplb.eplb_state",
    "vllm.model_executor.layers.fused_moe.router.base_router",
)
# Upstream's compiled extensions, shipped in the wheel (loading them needs
# libcuda, so on a GPU-less box they are only looked for).
BINARIES = ("_C.abi3.so", "_moe_C.abi3.so", "cumem_allocator.abi3.so")


def check(condition: object, message: str) -> None:
    if not condition:
        sys.exit(f"wheel check failed: {message}")


def main(expected_version: str) -> None:
    site = Path(sysconfig.get_paths()["platlib"]).resolve()
    import vllm

    check(
        vllm.__version__ == expected_version,
        f"vllm.__version__ is {vllm.__version__}, expected {expected_version}",
    )
    modules = {}
    for name in PATCHED:
        modules[name] = module = importlib.import_module(name)
        path = Path(module.__file__).resolve()
        check(site in path.parents, f"{name} imported from {path}, not from {site}")
        print(f"{name}: {path.relative_to(site)}")
    package = Path(vllm.__file__).resolve().parent
    missing = [b for b in BINARIES if not (package / b).is_file()]
    check(not missing, f"{package} lacks {', '.join(missing)}")

    router = modules["vllm.model_executor.layers.fused_moe.router.base_router"]
    check(
        hasattr(router, "_eplb_map_and_record_kernel"),
        "base_router has no _eplb_map_and_record_kernel (the series' Triton kernel)",
    )
    from pydantic import ValidationError

    config = modules["vllm.config.parallel"]
    try:
        config.EPLBConfig(window_size=0)
    except ValidationError as error:
        refusal = str(error).splitlines()[0]
    else:
        check(False, "EPLBConfig(window_size=0) was accepted (the series requires > 0)")
    print(f"EPLBConfig(window_size=0): {refusal}")
    print(
        f"vllm {vllm.__version__} from {package}: the series' modules, "
        f"{len(BINARIES)} compiled extensions present"
    )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -I eplb_fork/wheel_check.py EXPECTED_VERSION")
    main(sys.argv[1])
