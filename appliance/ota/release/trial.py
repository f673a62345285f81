"""The trial of a new release, as changes to the release root (standard library only: the start
guard runs this before anything else). Each function is one step whose order is chosen so that
a power cut between any two of its writes leaves a state the next start completes (`on_start`):

- `begin`: state "trial of V, starts 0, before it P" written, then `current` switched to V. Cut
  between the two: the next start finds the trial with `current` still at P, records V as failed
  ("interrupted before the switch") and runs P.
- `on_start` (every start, from the unit's ExecStartPre): counts the trial's start in the state
  file; past `max_starts` it switches `current` back to P and records V as failed. A cut after
  the switch back and before the state write: the next start finds `current` is not V, and
  records the failure then.
- `confirm` (the new release, once healthy): `confirmed` switched to V, then the state written
  (trial closed). Cut between: the next start finds `confirmed` already V and closes the trial.
- `fail` (health check failed, or rollback by command during a trial): `current` back to P,
  then the state written.
- `roll_back` (by command, no trial open): `current`, then `confirmed`, to the previous
  confirmed release, then the state. Cut between the links: the next start finds no trial and
  `current` != `confirmed`, and makes `confirmed` follow `current` (a release confirmed once).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable

from appliance.ota.release.slots import CONFIRMED, CURRENT, INCOMING, ReleaseRoot, Trial


class NoRollback(Exception):
    """Nothing to roll back to, or the release to restore is not there."""


def begin(
    root: ReleaseRoot,
    version: str,
    source: str,
    max_starts: int,
    on_step: Callable[[str], None] = lambda step: None,
) -> Trial:
    previous = root.linked(CURRENT)
    if previous is None:
        raise NoRollback(f"{root.root}/{CURRENT} names no installed release: nothing to return to")
    state = root.load()
    state.trial = Trial(version, previous, max_starts, source)
    root.save(state)
    on_step("trial_recorded")
    root.switch(CURRENT, version)
    on_step("switched")
    return state.trial


def on_start(root: ReleaseRoot) -> str:
    """What the start guard does at each start; returns what it did, in words."""
    state = root.load()
    trial = state.trial
    current, confirmed = root.linked(CURRENT), root.linked(CONFIRMED)
    if trial is not None and confirmed == trial.version:
        state.previous, state.trial = trial.previous, None
        state.installs += 1
        root.save(state)
        return f"release {trial.version} had passed its trial; confirmed"
    if trial is not None and current != trial.version:
        state.fail(trial.version, "its trial was interrupted before or after the switch "
                   "(power cut or kill); the release before it runs")  # fmt: skip
        state.trial = None
        root.save(state)
        return f"trial of {trial.version} interrupted; {_repair(root)}"
    if trial is not None:
        trial.starts += 1
        if trial.starts <= trial.max_starts:
            root.save(state)
            return f"trial of {trial.version}: start {trial.starts} of {trial.max_starts}"
        reason = (
            f"started {trial.max_starts} times without passing its health check "
            "(crash loop, or power cuts during the trial)"
        )
        return _switch_back(root, reason, automatic=True)
    _clean_partials(root)
    return _repair(root)


def confirm(root: ReleaseRoot, version: str) -> None:
    root.switch(CONFIRMED, version)
    state = root.load()
    if state.trial is not None and state.trial.version == version:
        state.previous, state.trial = state.trial.previous, None
        state.installs += 1
        root.save(state)


def fail(root: ReleaseRoot, reason: str, automatic: bool) -> str:
    """End the open trial: back to the release before it."""
    if root.load().trial is None:
        raise NoRollback("no release is on trial")
    return _switch_back(root, reason, automatic)


def roll_back(root: ReleaseRoot, reason: str) -> str:
    """By command: end the trial if one is open, else go back to the previous confirmed
    release."""
    state = root.load()
    if state.trial is not None:
        return _switch_back(root, reason, automatic=False)
    target = state.previous
    if target is None or not root.complete(target):
        raise NoRollback("no previous release to roll back to" if target is None
                         else f"the previous release {target} is no longer installed")  # fmt: skip
    was = root.linked(CURRENT)
    root.switch(CURRENT, target)
    root.switch(CONFIRMED, target)
    state.previous = None
    state.rollbacks += 1
    if was is not None:
        state.fail(was, reason)
    root.save(state)
    return f"rolled back from {was} to {target}"


def _switch_back(root: ReleaseRoot, reason: str, automatic: bool) -> str:
    state = root.load()
    trial = state.trial
    assert trial is not None
    target = trial.previous
    if not root.complete(target):
        target = root.linked(CONFIRMED) or target
    root.switch(CURRENT, target)
    state.trial = None
    state.fail(trial.version, reason)
    state.rollbacks += 1
    state.automatic_rollbacks += automatic
    root.save(state)
    return f"release {trial.version} rolled back to {target}: {reason}"


def _repair(root: ReleaseRoot) -> str:
    current, confirmed = root.linked(CURRENT), root.linked(CONFIRMED)
    if current is None and confirmed is not None:
        root.switch(CURRENT, confirmed)
        return f"{CURRENT} was unusable; back to {confirmed}"
    if current is not None and current != confirmed:
        root.switch(CONFIRMED, current)
        return f"{CONFIRMED} follows {CURRENT} ({current}; an interrupted rollback)"
    return f"running {current}"


def _clean_partials(root: ReleaseRoot) -> None:
    """Releases a power cut or a failure left half built (never linked to), and staged wheels."""
    shutil.rmtree(root.wheels / INCOMING, ignore_errors=True)
    linked = {root.linked(CURRENT), root.linked(CONFIRMED)}
    if root.releases.is_dir():
        for path in root.releases.iterdir():
            if path.name not in linked and not root.complete(path.name):
                shutil.rmtree(path, ignore_errors=True)
