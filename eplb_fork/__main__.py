"""Command line: `python -m eplb_fork {fork,install,patches,wheel,link,changelog,apply}`,
the queries the Makefile asks (`info`, `touched`, `revision`) and `gpu-bundle`."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from eplb_fork import REPO_ROOT, EngineError, gpu_bundle, info
from eplb_fork.apply import apply_series, tree_version
from eplb_fork.base import Release, fetch_sdist, fetch_wheel, load_pins, pinned_release
from eplb_fork.baserepo import base_tag, fresh_base
from eplb_fork.export import export_patches
from eplb_fork.gittree import Repo
from eplb_fork.series import (
    LINES,
    Line,
    changelog,
    line_for,
    patch_commits,
    series_author,
    unchecked_release_notice,
    with_changelog,
)

BUILD = REPO_ROOT / "build"
INFO_FACTS = {
    "release": "the base's vLLM version (--base, or requirements/base.toml's default)",
    "version": "the fork's version, 0.19.1+eplb.N (N commits on its base)",
    "base-tag": "the tag of the base commit in the fork",
    "bases": "every other pinned release some line is for, line by line",
}


def _cache(args: argparse.Namespace) -> Path:
    return Path(args.cache or os.environ.get("EPLB_CACHE") or REPO_ROOT / ".cache")


class Step:
    """Prints a step's name and wall time: the README quotes these."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        self.started = time.monotonic()
        print(f"== {self.name}", flush=True)

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            print(f"== {self.name}: {time.monotonic() - self.started:.1f}s", flush=True)


def fork_version(release_version: str, patch_count: int) -> str:
    return f"{release_version}+eplb.{patch_count}"


def _installed_version(release: Release, fork: Path, applied: int | None = None) -> str:
    """The fork's version, for the editable install and the wheel: the
    release, then the number of commits the series made on the base."""
    if applied is None:
        if not (fork / ".git").exists():
            raise EngineError(f"no fork at {fork}: run 'make fork' first")
        applied = int(Repo(fork).git("rev-list", "--count", f"{base_tag(release)}..HEAD"))
    return fork_version(release.version, applied)


def _line(version: str | None) -> Line:
    line = line_for(version)
    if notice := unchecked_release_notice(version, load_pins()[1]):
        print(notice, flush=True)
    print(f"series: the {line.describe(version)}", flush=True)
    return line


def cmd_fork(args: argparse.Namespace) -> None:
    release = pinned_release(args.base)
    line = _line(release.version)
    patches = line.patches()
    author = series_author()
    fork = Path(args.fork)
    with Step(f"base vLLM {release.version}"):
        repo = fresh_base(fork, release, fetch_sdist(release, _cache(args)), author)
    with Step(f"apply {len(patches)} patches"):
        outcomes = apply_series(
            repo, patches, author, base_version=release.version, since=base_tag(release)
        )
    with Step("export patches"):
        exported = export_patches(
            repo, release, Path(args.patches), patches, author, line.directory / "cover-letter.md"
        )
        print(f"{len(exported)} files (cover letter and patches) in {args.patches}")
    if args.install:
        cmd_install(args, applied=sum(1 for o in outcomes if o.commit))


def cmd_install(args: argparse.Namespace, applied: int | None = None) -> None:
    from eplb_fork.install import install_fork

    release = pinned_release(args.base)
    fork = Path(args.fork)
    version = _installed_version(release, fork, applied)
    with Step("install the fork"):
        wheel = fetch_wheel(release, _cache(args))
        install_fork(fork, Path(args.venv), wheel, version, release.requirement_swaps)


def cmd_wheel(args: argparse.Namespace) -> None:
    from eplb_fork.wheel import build_wheel

    release = pinned_release(args.base)
    fork = Path(args.fork)
    version = _installed_version(release, fork)
    with Step(f"wheel of the fork, vllm {version}"):
        upstream = fetch_wheel(release, _cache(args))
        build_wheel(fork, Path(args.venv), upstream, version, base_tag(release), Path(args.dest))


def cmd_link(args: argparse.Namespace) -> None:
    from eplb_fork.links import link_distributions

    linked = link_distributions(Path(args.venv), Path(args.into), args.roots)
    print(
        f"linked {len(linked)} distributions from {args.venv} into {args.into}: {', '.join(linked)}"
    )


def cmd_patches(args: argparse.Namespace) -> None:
    release = pinned_release(args.base)
    line = _line(release.version)
    exported = export_patches(
        Repo(Path(args.fork)),
        release,
        Path(args.patches),
        line.patches(),
        series_author(),
        line.directory / "cover-letter.md",
    )
    for path in exported:
        print(path)


def cmd_apply(args: argparse.Namespace) -> None:
    repo = Repo(Path(args.tree))
    version = tree_version(repo)
    print(
        f"apply the series to {args.tree} (vLLM {version or 'version unknown'}) "
        f"on new branch {args.branch}"
    )
    patches = _line(version).patches()
    apply_series(repo, patches, series_author(), branch=args.branch, base_version=version)


def cmd_info(args: argparse.Namespace) -> None:
    release = pinned_release(args.base)
    if args.fact == "release":
        print(release.version)
    elif args.fact == "version":
        print(_installed_version(release, Path(args.fork)))
    elif args.fact == "base-tag":
        print(base_tag(release))
    elif args.fact == "bases":
        print(" ".join(info.bases_to_test(release.version, load_pins()[1])))


def cmd_touched(args: argparse.Namespace) -> None:
    repo = Repo(Path(args.tree or args.fork))
    files = info.touched(
        repo, args.old, args.new, python=args.python, tests=args.tests, skip=args.skip
    )
    print("\n".join(files))


def cmd_revision(args: argparse.Namespace) -> None:
    names = [patch.name for patch in line_for(pinned_release(args.base).version).patches()]
    if args.patch not in names:
        raise EngineError(f"{args.patch} is not a patch of the series ({', '.join(names)})")
    held = patch_commits(Repo(Path(args.fork)), "HEAD")
    if args.patch not in held:
        raise EngineError(f"no commit in {args.fork} carries the trailer of {args.patch}")
    print(held[args.patch])


def cmd_gpu_bundle(args: argparse.Namespace) -> None:
    release = pinned_release(args.base)
    line = line_for(release.version)
    dest = Path(args.dest)
    files = gpu_bundle.make_bundle(Repo(Path(args.fork)), release, line, dest)
    print(f"{dest}: vLLM {release.version}, the {line.name} line, {len(files)} files")


def cmd_changelog(args: argparse.Namespace) -> None:
    readme = REPO_ROOT / "README.md"
    for line in LINES:
        patches = line.patches()
        readme.write_text(with_changelog(readme.read_text(), changelog(patches), line))
        print(f"wrote the {line.name} line's table ({len(patches)} patches) into README.md")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eplb_fork", description=__doc__)
    parser.add_argument("--base", help="base vLLM version (default: requirements/base.toml)")
    parser.add_argument("--cache", help="download cache (default: $EPLB_CACHE or .cache/)")
    parser.add_argument("--fork", default=str(BUILD / "fork"))
    parser.add_argument("--patches", default=str(BUILD / "patches"))
    parser.add_argument("--venv", default=str(REPO_ROOT / ".venv"))
    sub = parser.add_subparsers(dest="command", required=True)
    fork = sub.add_parser("fork", help="base -> series -> build/fork, build/patches")
    fork.add_argument("--install", action="store_true", help="then install it into the venv")
    fork.set_defaults(run=cmd_fork)
    sub.add_parser("install", help="install build/fork into the venv").set_defaults(run=cmd_install)
    sub.add_parser("patches", help="regenerate build/patches").set_defaults(run=cmd_patches)
    wheel = sub.add_parser("wheel", help="a wheel of build/fork, precompiled binaries")
    wheel.add_argument("--dest", default=str(BUILD / "wheel"))
    wheel.set_defaults(run=cmd_wheel)
    link = sub.add_parser(
        "link", help="hard-link installed distributions (with their requirements) into a venv"
    )
    link.add_argument("--into", required=True, help="the venv that gets them")
    link.add_argument("roots", nargs="+", help="distribution names, e.g. torch")
    link.set_defaults(run=cmd_link)
    sub.add_parser(
        "changelog", help="the series tables in README.md, from each line's series file"
    ).set_defaults(run=cmd_changelog)
    apply = sub.add_parser("apply", help="apply the series to a git checkout")
    apply.add_argument("--tree", required=True)
    apply.add_argument("--branch", default="eplb-fastpath")
    apply.set_defaults(run=cmd_apply)
    facts = sub.add_parser("info", help="a fact the Makefile needs, from the engine's sources")
    facts.add_argument(
        "fact", choices=INFO_FACTS, help="; ".join(map(": ".join, INFO_FACTS.items()))
    )
    facts.set_defaults(run=cmd_info)
    touch = sub.add_parser("touched", help="files the commits OLD..NEW add or edit, one a line")
    touch.add_argument("--tree", help="the git checkout (default: the fork)")
    touch.add_argument("--python", action="store_true", help="Python files only")
    touch.add_argument("--tests", action="store_true", help="test files only (tests/**/test_*.py)")
    touch.add_argument("--skip", action="append", default=[], help="leave this file out")
    touch.add_argument("old")
    touch.add_argument("new")
    touch.set_defaults(run=cmd_touched)
    revision = sub.add_parser("revision", help="the fork's commit of a patch (by its trailer)")
    revision.add_argument("patch", help="a patch module's name, as in its line's series file")
    revision.set_defaults(run=cmd_revision)
    bundle = sub.add_parser("gpu-bundle", help="the fork's GPU bundle (eplb_fork/gpu_bundle.py)")
    bundle.add_argument("--dest", required=True, help="the bundle's folder (replaced)")
    bundle.set_defaults(run=cmd_gpu_bundle)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except EngineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
