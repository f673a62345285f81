"""`appliance train --features FILE.npz`: training rows from the receiver's export.

The file is what `appliance-receiver export` writes (format `appliance-features/1`, documented in
receiver/README.md): one asset's feature names, window end times, values and, per window, whether
the gateway scored it and found it anomalous, and the operators' verdict on the anomaly it
falls in, if any (verdict_labels.py: what that changes). It is read here with numpy alone: the
appliance never imports the receiver, the file format is the contract between them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from appliance.errors import BundleError
from appliance.training.from_store import TrainingRows
from appliance.training.verdict_labels import normal_windows

EXPORT_FORMAT = "appliance-features/1"
FIELDS = ("format", "asset", "names", "window_end", "values", "anomalous")


def load_export_rows(
    path: Path,
    *,
    since: float | None = None,
    until: float | None = None,
    keep_anomalous: bool = False,
) -> TrainingRows:
    """The normal rows of the exported asset; BundleError naming the file and what is wrong."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [name for name in FIELDS if name not in data]
            if missing:
                raise BundleError(f"{path}: not a feature export (missing {', '.join(missing)})")
            if str(data["format"]) != EXPORT_FORMAT:
                raise BundleError(f"{path}: format {str(data['format'])!r}, not {EXPORT_FORMAT}")
            asset, names = str(data["asset"]), tuple(str(n) for n in data["names"])
            times = np.asarray(data["window_end"], dtype=np.float64)
            values = np.asarray(data["values"], dtype=np.float64)
            anomalous = np.asarray(data["anomalous"], dtype=bool)
            labels = np.asarray(data["verdict"] if "verdict" in data else np.full(len(times), ""))
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: cannot read the feature export: {exc}") from exc
    if labels.shape != times.shape:
        raise BundleError(f"{path}: {labels.shape} verdicts for {times.shape} windows")
    if values.shape != (len(times), len(names)) or anomalous.shape != times.shape:
        raise BundleError(f"{path}: values {values.shape} do not match {len(names)} names")
    inside = np.ones(len(times), dtype=bool)
    if since is not None:
        inside &= times >= since
    if until is not None:
        inside &= times < until
    finite = inside & np.isfinite(values).all(axis=1)
    chosen = normal_windows(anomalous[finite], labels[finite], keep_anomalous)
    kept = np.zeros(len(times), dtype=bool)
    kept[finite] = chosen.kept
    skipped = {
        "outside --since/--until": int((~inside).sum()),
        "with non-finite values": int((inside & ~finite).sum()),
        **chosen.skipped,
    }
    return TrainingRows(
        source=str(path),
        asset=asset,
        feature_names=names,
        rows=values[kept],
        window_times=times[kept],
        skipped=skipped,
        notes=chosen.notes,
    )
