"""Peak RSS of `appliance demo` (bar: under 150 MB), against the interpreter that only imports it.

Each measurement is a child process; its peak RSS is read from getrusage(RUSAGE_CHILDREN) after
it exits (children are measured one at a time, so each figure is that child's own peak).

    .venv/bin/python bench/bench_memory.py [--seconds 120] [--fault imbalance ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile


def peak_rss_mb(command: list[str]) -> float:
    pid = os.fork()
    if pid == 0:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.execv(command[0], command)
    _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed with status {status}")
    return usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--fault", action="append", default=[])
    args = parser.parse_args()
    imports_only = peak_rss_mb([sys.executable, "-c", "import appliance.app, appliance.cli"])
    with tempfile.TemporaryDirectory() as data_dir:
        demo = [sys.executable, "-m", "appliance.cli", "demo", "--seconds", str(args.seconds)]
        demo += ["--data-dir", data_dir, *(f"--fault={f}" for f in args.fault)]
        demo_peak = peak_rss_mb(demo)
    print(f"imports only (baseline)        peak RSS {imports_only:6.1f} MB")
    print(f"appliance demo {args.seconds:.0f} s {args.fault or ''} peak RSS {demo_peak:6.1f} MB")
    print(
        f"demo / imports: {demo_peak / imports_only:.2f}x; bar 150 MB: "
        f"{'met' if demo_peak < 150 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
