"""`appliance train`: retrain an asset's bundle from what a gateway stored (workstation side).

Two steps, kept apart so that another source (the receiver's export, a later issue) needs only
its own loader returning `TrainingRows`:

    load_store_rows(path, asset, ...) -> TrainingRows    the rows, their window times, what was
                                                         skipped and why
    train_rows(rows, out_dir, ...)    -> TrainResult     an int8 bundle through train_bundle

Which rows: the asset's windows in [since, until) with the newest feature schema among them (the
names of the last such window: a firmware or configuration change gives new names, and a model
has exactly one set), minus windows the gateway scored anomalous (unless keep_anomalous) and
windows with a non-finite value (training refuses them). Operators' verdicts on anomaly episodes
(the store's verdict alerts) overrule the scores: a real fault's windows are left out, a false
alarm's windows are normal (verdict_labels.py). A score belongs to the window whose end
time equals its time (the detect stage scores a vector at its window_end).

The database is only read, but it is opened through Store, so one written by an older release is
migrated on opening (as the gateway would); point the command at a copy if that matters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from appliance.detect.bundle import ModelBundle
from appliance.errors import BundleError, StoreError
from appliance.records import Alert, FloatArray
from appliance.store import History, Store, StoreSettings
from appliance.training.autoencoder import TrainSettings, train_bundle
from appliance.training.verdict_labels import normal_windows
from appliance.uplink.schema.verdicts import judged_episodes, label_windows

MIN_TRAINING_ROWS = 200
"""Fewest rows trained on: the fixed threshold is the 0.995 quantile of the training errors,
which needs 200 rows to be more than their maximum."""
PAGE_ROWS = 5000
"""Rows read from the store per query."""
ADVISED_SPAN_S = 3600.0
"""Training windows spanning less than this get a warning: on SKAB's healthy run a model learnt
from 6.7 minutes alarmed on 22 % of the normal rows after it, from 53 minutes on 4 %
(docs/DETECTION.md, "How long to learn")."""


@dataclass(frozen=True, eq=False)
class TrainingRows:
    """Normal rows of one asset from some source, ready for training."""

    source: str
    asset: str
    feature_names: tuple[str, ...]
    rows: FloatArray
    """(n, d), in feature_names order."""
    window_times: FloatArray
    """(n,) window end times, UTC seconds."""
    skipped: Mapping[str, int]
    """Reason -> number of windows left out for it."""
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class TrainResult:
    bundle: ModelBundle
    data: TrainingRows
    bundle_bytes: int
    """Size of the bundle directory's files."""

    def summary(self) -> str:
        manifest = self.bundle.manifest
        span = manifest.data_span
        skipped = ", ".join(f"{count} {reason}" for reason, count in self.data.skipped.items())
        lines = [
            f"{self.data.asset}: trained bundle {self.bundle.bundle_id} in {self.bundle.path}",
            f"  rows: {span.rows} used, windows {span.start_utc} .. {span.end_utc}",
            f"  skipped: {skipped or 'none'}",
            *(f"  note: {note}" for note in self.data.notes),
            *short_span_warning(self.data.window_times),
            f"  features: {manifest.n_features}",
            f"  fixed threshold: {manifest.threshold.fixed_threshold:.6g} "
            f"({manifest.training.get('threshold_quantile')} quantile of the training errors "
            f"x {manifest.training.get('threshold_margin')})",
            f"  bundle: {self.bundle_bytes} bytes, model sha256 {manifest.model_sha256}",
        ]
        return "\n".join(lines)


def short_span_warning(window_times: FloatArray) -> list[str]:
    """A warning line if the training windows span less than ADVISED_SPAN_S, else none."""
    span_s = float(window_times.max() - window_times.min()) if len(window_times) else 0.0
    if span_s >= ADVISED_SPAN_S:
        return []
    return [
        f"  warning: the training windows span only {span_s / 60:.1f} minutes; a model learnt "
        "from so short a stretch of normal running alarms on much of the normal running after "
        'it as the machine warms up and drifts (docs/DETECTION.md, "How long to learn"): '
        "train on an hour or more that covers warm-up and the usual operating states"
    ]


def train_from_store(
    path: Path,
    asset: str,
    out_dir: Path,
    *,
    since: float | None = None,
    until: float | None = None,
    keep_anomalous: bool = False,
    version: str | None = None,
    settings: TrainSettings | None = None,
) -> TrainResult:
    """`appliance train`: load the asset's rows from a gateway store, train, write the bundle."""
    refuse_used_out_dir(out_dir)
    rows = load_store_rows(path, asset, since=since, until=until, keep_anomalous=keep_anomalous)
    return train_rows(rows, out_dir, version=version, settings=settings)


def train_rows(
    data: TrainingRows,
    out_dir: Path,
    *,
    version: str | None = None,
    settings: TrainSettings | None = None,
    min_rows: int = MIN_TRAINING_ROWS,
) -> TrainResult:
    """Train an int8 bundle for `data.asset` on `data` and write it to `out_dir`."""
    if len(data.rows) < min_rows:
        skipped = ", ".join(f"{count} {reason}" for reason, count in data.skipped.items())
        raise BundleError(
            f"{data.source}: only {len(data.rows)} usable windows of asset {data.asset!r}; "
            f"training needs at least {min_rows} (skipped: {skipped or 'none'})"
        )
    refuse_used_out_dir(out_dir)
    bundle = train_bundle(
        data.rows,
        data.feature_names,
        asset=data.asset,
        version=version or datetime.now(UTC).strftime("%Y-%m-%d"),
        out_dir=out_dir,
        window_times=data.window_times,
        settings=settings,
    )
    size = sum(f.stat().st_size for f in out_dir.iterdir() if f.is_file())
    return TrainResult(bundle, data, size)


def refuse_used_out_dir(out_dir: Path) -> None:
    """A bundle is never written over existing files (e.g. the bundle in service)."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise BundleError(f"{out_dir}: exists and is not an empty directory; choose a new one")


def load_store_rows(
    path: Path,
    asset: str,
    *,
    since: float | None = None,
    until: float | None = None,
    keep_anomalous: bool = False,
) -> TrainingRows:
    """The asset's normal rows from a gateway store database (see the module docstring)."""
    if not path.is_file():
        raise StoreError(f"{path}: no such database file")
    return asyncio.run(_load_store_rows(path, asset, since, until, keep_anomalous))


async def _load_store_rows(
    path: Path, asset: str, since: float | None, until: float | None, keep_anomalous: bool
) -> TrainingRows:
    async with await Store.open(StoreSettings(path)) as store:
        history = store.history
        by_schema, outside, total = await _windows_by_schema(history, asset, since, until)
        if total == 0:
            assets = ", ".join(await _stored_assets(history)) or "none"
            raise StoreError(f"{path}: no feature vectors of asset {asset!r} (assets: {assets})")
        anomalous = await _anomalous_times(history, asset)
        episodes = judged_episodes(await _alerts(history, asset))
    newest = next(reversed(by_schema), ())
    skipped = {
        "outside --since/--until": outside,
        "of other feature schemas": sum(len(w) for n, w in by_schema.items() if n != newest),
    }
    windows = by_schema.get(newest, [])
    finite = [(t, v) for t, v in windows if np.isfinite(v).all()]
    skipped["with non-finite values"] = len(windows) - len(finite)
    times = np.array([t for t, _ in finite], dtype=np.float64)
    flags = np.array([t in anomalous for t, _ in finite], dtype=np.bool_)
    chosen = normal_windows(flags, label_windows(times, episodes), keep_anomalous)
    skipped.update(chosen.skipped)
    kept = [window for window, keep in zip(finite, chosen.kept, strict=True) if keep]
    notes = chosen.notes
    width = len(newest)
    return TrainingRows(
        source=str(path),
        asset=asset,
        feature_names=newest,
        rows=np.array([v for _, v in kept], dtype=np.float64).reshape(len(kept), width),
        window_times=np.array([t for t, _ in kept], dtype=np.float64),
        skipped=skipped,
        notes=notes,
    )


Windows = list[tuple[float, FloatArray]]


async def _windows_by_schema(
    history: History, asset: str, since: float | None, until: float | None
) -> tuple[dict[tuple[str, ...], Windows], int, int]:
    """In-span windows grouped by feature names (the newest schema last), the number outside the
    span, and the number of the asset's windows in all."""
    by_schema: dict[tuple[str, ...], Windows] = {}
    outside = total = 0
    after = 0
    while page := await history.features(asset, after, PAGE_ROWS):
        for _, vector in page:
            total += 1
            t = vector.window_end
            if (since is not None and t < since) or (until is not None and t >= until):
                outside += 1
                continue
            windows = by_schema.pop(vector.names, [])  # re-inserted: dict order = newest last
            windows.append((t, vector.values))
            by_schema[vector.names] = windows
        after = page[-1][0]
    return by_schema, outside, total


async def _anomalous_times(history: History, asset: str) -> set[float]:
    times: set[float] = set()
    after = 0
    while page := await history.scores(asset, after, PAGE_ROWS):
        times.update(score.t for _, score in page if score.anomalous)
        after = page[-1][0]
    return times


async def _alerts(history: History, asset: str) -> list[Alert]:
    alerts: list[Alert] = []
    after = 0
    while page := await history.alerts(asset, after, PAGE_ROWS):
        alerts.extend(alert for _, alert in page)
        after = page[-1][0]
    return alerts


async def _stored_assets(history: History) -> list[str]:
    assets: set[str] = set()
    after = 0
    while page := await history.features(None, after, PAGE_ROWS):
        assets.update(vector.asset for _, vector in page)
        after = page[-1][0]
    return sorted(assets)


def parse_utc_time(text: str) -> float:
    """ISO 8601 (`2026-01-31`, `2026-01-31T12:00:00Z`, with an offset) -> UTC seconds; a time
    without an offset is taken as UTC. ValueError if it is not one."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an ISO 8601 time: {text!r} (e.g. 2026-01-31T12:00:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
