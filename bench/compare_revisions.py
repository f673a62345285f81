"""bench_pipeline and bench_backlog for an old revision and the current code, interleaved.

The old revision is checked out as a git worktree in a temp dir and run with the same .venv,
PYTHONPATH set to the worktree so its code is imported (the `appliance-receiver` subprocess of
bench_backlog inherits it), and its own bench scripts (their arguments may differ between
revisions). Each round runs every bench once per side, old and new alternating which goes first,
so drift of a shared machine hits both. Figures (lower is better): bench_pipeline's incremental
CPU seconds, bench_backlog's drain seconds (its baselines skipped); bench_pipeline's scipy
baseline is shown as a control (the same code on both sides but the store: if its new / old is
far from 1, the machine drifted). At the end, each side's median and new / old (the bar of
issue 19: at most 1.10).

    .venv/bin/python bench/compare_revisions.py [--old a217215] [--new REV] [--rounds 3]
        [--pipeline-seconds 60] [--backlog-seconds 86400]

Without --new, "new" is the checkout this script is in (uncommitted changes included).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Figure:
    name: str
    pattern: re.Pattern[str]
    unit: str


@dataclass(frozen=True)
class Bench:
    script: str
    arguments: list[str]
    figures: tuple[Figure, ...]


PIPELINE = (
    Figure("bench_pipeline", re.compile(r"^\s*incremental\s+cpu\s+([0-9.]+) s", re.M), "cpu s"),
    # The scipy path runs the same code in both revisions but the store: drift shows here.
    Figure("  its scipy baseline (control)", re.compile(r"^\s*baseline.*cpu\s+([0-9.]+) s", re.M),
           "cpu s"),
)  # fmt: skip
BACKLOG = (Figure("bench_backlog", re.compile(r"^ours: drained in ([0-9.]+) s", re.M), "s drain"),)


@dataclass
class Side:
    label: str
    root: Path
    figures: dict[str, list[float]] = field(default_factory=dict)


@contextmanager
def worktree(revision: str) -> Iterator[Path]:
    """`revision` checked out (detached) in a temp dir, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="bench-rev-") as tmp:
        path = Path(tmp) / "tree"
        git("worktree", "add", "--detach", str(path), revision)
        try:
            yield path
        finally:
            git("worktree", "remove", "--force", str(path))


def git(*arguments: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO), *arguments], check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def run_bench(bench: Bench, side: Side) -> None:
    """Run `bench` on `side`'s code and keep its figures (its whole output is printed if one is
    not found)."""
    environment = {**os.environ, "PYTHONPATH": str(side.root)}
    command = [sys.executable, str(side.root / "bench" / bench.script), *bench.arguments]
    started = time.monotonic()
    done = subprocess.run(
        command, cwd=side.root, env=environment, capture_output=True, text=True, check=False
    )
    found = [figure.pattern.search(done.stdout) for figure in bench.figures]
    if done.returncode != 0 or None in found:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"{bench.script} on {side.label} failed (exit {done.returncode})")
    ran_s = time.monotonic() - started
    for figure, match in zip(bench.figures, found, strict=True):
        assert match is not None
        value = float(match.group(1))
        side.figures.setdefault(figure.name, []).append(value)
        print(f"  {figure.name:30s} {side.label:20s} {value:8.2f} {figure.unit}", flush=True)
    print(f"  ({bench.script} ran {ran_s:.0f} s)", flush=True)


def imported_from(side: Side) -> str:
    """Where `appliance` is imported from on `side`: a check that PYTHONPATH wins over the
    editable install."""
    return subprocess.run(
        [sys.executable, "-c", "import appliance; print(appliance.__file__)"],
        cwd=side.root,
        env={**os.environ, "PYTHONPATH": str(side.root)},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def compare(benches: list[Bench], old: Side, new: Side, rounds: int) -> None:
    for side in (old, new):
        print(f"{side.label}: appliance from {imported_from(side)}", flush=True)
    for round_number in range(rounds):
        print(f"round {round_number + 1}/{rounds}", flush=True)
        order = (old, new) if round_number % 2 == 0 else (new, old)
        for bench in benches:
            for side in order:
                run_bench(bench, side)
    print("---")
    for figure in (figure for bench in benches for figure in bench.figures):
        before, after = old.figures[figure.name], new.figures[figure.name]
        old_median, new_median = statistics.median(before), statistics.median(after)
        print(
            f"{figure.name.strip()}: median old {old_median:.2f} {figure.unit}, new "
            f"{new_median:.2f} {figure.unit}, new / old = {new_median / old_median:.3f} "
            f"(old {fmt(before)}; new {fmt(after)})"
        )


def fmt(figures: list[float]) -> str:
    return ", ".join(f"{figure:.2f}" for figure in figures)


def benches_for(args: argparse.Namespace) -> list[Bench]:
    pipeline = Bench("bench_pipeline.py", ["--seconds", str(args.pipeline_seconds)], PIPELINE)
    backlog = Bench(
        "bench_backlog.py", ["--seconds", str(args.backlog_seconds), "--skip-baselines"], BACKLOG
    )
    return [bench for bench in (pipeline, backlog) if args.only in (None, bench.script[:-3])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default="a217215", help="baseline revision")
    parser.add_argument("--new", help="revision to compare; default: this checkout as it is")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pipeline-seconds", type=int, default=60)
    parser.add_argument("--backlog-seconds", type=int, default=86_400)
    parser.add_argument("--only", choices=("bench_pipeline", "bench_backlog"))
    args = parser.parse_args()
    with ExitStack() as stack:
        old = Side(f"old {args.old}", stack.enter_context(worktree(args.old)))
        new_root = REPO if args.new is None else stack.enter_context(worktree(args.new))
        new = Side(f"new {args.new or 'checkout'}", new_root)
        compare(benches_for(args), old, new, args.rounds)


if __name__ == "__main__":
    main()
