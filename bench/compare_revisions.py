"""bench_pipeline and bench_backlog for an old revision and the current code, interleaved.

The old revision is checked out as a git worktree in a temp dir and run with the same .venv,
PYTHONPATH set to the worktree so its code is imported (the `appliance-receiver` subprocess of
bench_backlog inherits it), and its own bench scripts (their arguments may differ between
revisions). Each round runs every bench once per side, old and new alternating which goes first,
so drift of a shared machine hits both. Figures (lower is better): bench_pipeline's incremental
CPU seconds, bench_backlog's drain seconds (its baselines skipped). At the end, each side's
median and new / old (the bar of issue 19: at most 1.10).

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
PIPELINE_CPU = re.compile(r"^\s*incremental\s+cpu\s+([0-9.]+) s", re.MULTILINE)
BACKLOG_DRAIN = re.compile(r"^ours: drained in ([0-9.]+) s", re.MULTILINE)


@dataclass(frozen=True)
class Bench:
    name: str
    script: str
    arguments: list[str]
    figure: re.Pattern[str]
    unit: str


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


def run_bench(bench: Bench, side: Side) -> float:
    """Run `bench` on `side`'s code; its figure (the whole output is printed if none is found)."""
    environment = {**os.environ, "PYTHONPATH": str(side.root)}
    command = [sys.executable, str(side.root / "bench" / bench.script), *bench.arguments]
    started = time.monotonic()
    done = subprocess.run(
        command, cwd=side.root, env=environment, capture_output=True, text=True, check=False
    )
    found = bench.figure.search(done.stdout)
    if done.returncode != 0 or found is None:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"{bench.name} on {side.label} failed (exit {done.returncode})")
    figure = float(found.group(1))
    print(
        f"  {bench.name:14s} {side.label:20s} {figure:8.2f} {bench.unit}"
        f"  (ran {time.monotonic() - started:.0f} s)",
        flush=True,
    )
    return figure


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
                side.figures.setdefault(bench.name, []).append(run_bench(bench, side))
    print("---")
    for bench in benches:
        old_median = statistics.median(old.figures[bench.name])
        new_median = statistics.median(new.figures[bench.name])
        print(
            f"{bench.name}: median old {old_median:.2f} {bench.unit}, new {new_median:.2f} "
            f"{bench.unit}, new / old = {new_median / old_median:.3f} "
            f"(old {fmt(old.figures[bench.name])}; new {fmt(new.figures[bench.name])})"
        )


def fmt(figures: list[float]) -> str:
    return ", ".join(f"{figure:.2f}" for figure in figures)


def benches_for(args: argparse.Namespace) -> list[Bench]:
    chosen = [
        Bench("bench_pipeline", "bench_pipeline.py",
              ["--seconds", str(args.pipeline_seconds)], PIPELINE_CPU, "cpu s"),
        Bench("bench_backlog", "bench_backlog.py",
              ["--seconds", str(args.backlog_seconds), "--skip-baselines"], BACKLOG_DRAIN,
              "s drain"),
    ]  # fmt: skip
    return [bench for bench in chosen if args.only in (None, bench.name)]


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
