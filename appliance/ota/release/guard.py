"""The start guard: `python -m appliance.ota.release.guard ROOT`, the appliance unit's first
ExecStartPre, run with the interpreter of `ROOT/confirmed` (a release that once passed its
health check). It counts a trial's starts and switches back once a new release has used them
up (trial.py `on_start`), so a release that cannot even start is rolled back too.

It always exits 0: a guard that failed would keep every release from starting. What it did is
one line on stdout (the journal)."""

from __future__ import annotations

import sys
from pathlib import Path

from appliance.ota.release.slots import ReleaseRoot
from appliance.ota.release.trial import on_start


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m appliance.ota.release.guard ROOT", file=sys.stderr)
        return 0
    root = ReleaseRoot(Path(argv[0]))
    try:
        with root.locked():
            print(f"release guard: {on_start(root)}", flush=True)
    except Exception as exc:  # never keep the service from starting
        print(f"release guard: failed ({type(exc).__name__}: {exc}); starting as linked")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
