"""`appliance-receiver export --summaries`: one asset's per-minute aggregates (the `summary`
uplink profile, PROTOCOL.md "Uplink profiles") as a .npz file.

Format "appliance-summaries/1" (numpy .npz):

    format       str   "appliance-summaries/1"
    gateway      str
    asset        str
    names        (d,)  str      feature names, in column order (the newest minute's)
    minute       (n,)  int64    each minute's start, UTC epoch seconds, increasing
    windows      (n,)  int64    feature windows summed up in the minute
    min, mean, max (n,d) float64  per feature; NaN where every value was missing
    scores       (n,)  int64    scores in the minute
    max_error    (n,)  float64  the largest anomaly score (NaN: none)
    threshold    (n,)  float64  the threshold that score was held against
    anomalous    (n,)  int64    scores above their threshold
    alarm        (n,)  bool     the asset was in an alarm episode during the minute
    skipped_other_names  int    minutes with other feature names, left out
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from receiver.db import Database
from receiver.db.summary_tables import StoredSummary
from receiver.errors import ReceiverError
from receiver.export import END_OF_TIME, listed, save_npz

SUMMARY_FORMAT = "appliance-summaries/1"


async def export_summaries(
    database: Database,
    gateway: str,
    asset: str,
    out: Path,
    since: float | None = None,
    until: float | None = None,
) -> str:
    """Write the asset's minutes with since <= minute start < until to `out`; a line saying
    what was written."""
    start, end = since or 0.0, END_OF_TIME if until is None else until
    rows = await database.summaries(gateway, asset, start, end)
    if not rows:
        gateways = await database.gateways()
        raise ReceiverError(
            f"no per-minute summaries of {gateway}/{asset} in that time span (gateways: "
            f"{listed(gateways)}; summaries come from gateways with [uplink] detail = summary)"
        )
    newest = rows[-1].schema_id
    kept = [row for row in rows if row.schema_id == newest]
    names = await database.schema_names(newest) if newest is not None else ()
    write_npz(out, gateway, asset, names, kept, len(rows) - len(kept))
    return (
        f"{gateway}/{asset}: {len(kept)} minutes x {len(names)} features, "
        f"{sum(row.alarm for row in kept)} in alarm, {len(rows) - len(kept)} skipped (other "
        "feature names)"
    )


def write_npz(
    path: Path,
    gateway: str,
    asset: str,
    names: tuple[str, ...],
    rows: list[StoredSummary],
    skipped: int,
) -> None:
    def stats(attribute: str) -> np.ndarray:
        arrays = [getattr(row, attribute) for row in rows]
        return np.stack(arrays).reshape(len(rows), len(names))

    def column(attribute: str, dtype: type) -> np.ndarray:
        return np.array([getattr(row, attribute) for row in rows], dtype=dtype)

    save_npz(
        path,
        format=np.array(SUMMARY_FORMAT),
        gateway=np.array(gateway),
        asset=np.array(asset),
        names=np.array(names, dtype=np.str_),
        minute=column("minute", np.int64),
        windows=column("windows", np.int64),
        min=stats("minimum"),
        mean=stats("mean"),
        max=stats("maximum"),
        scores=column("scores", np.int64),
        max_error=np.array([np.nan if r.max_error is None else r.max_error for r in rows]),
        threshold=np.array([np.nan if r.threshold is None else r.threshold for r in rows]),
        anomalous=column("anomalous", np.int64),
        alarm=column("alarm", np.bool_),
        skipped_other_names=np.array(skipped),
    )
