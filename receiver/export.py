"""`appliance-receiver export`: one asset's features for retraining, as a .npz file.

Format "appliance-features/1" (numpy .npz, read with `read_export` or np.load):

    format        str   "appliance-features/1"
    gateway       str
    asset         str
    names         (d,)  str      feature names, in column order
    seq           (n,)  int64    the gateway's sequence numbers
    window_end    (n,)  float64  UTC epoch seconds, increasing
    values        (n,d) float64  NaN where the gateway had NaN or an infinity
    anomalous     (n,)  bool     the gateway's score at window_end said anomalous
    scored        (n,)  bool     there is a score at window_end (anomalous is False otherwise)
    verdict       (n,)  str      "not_a_fault" or "real_fault" when an operator judged the
                                 anomaly episode the window falls in (raise to clear), else ""
                                 (absent from files written before verdicts: read as all "")
    skipped_other_names  int     rows in the time span with other feature names, left out

Only the newest feature names in the span are exported (a model has exactly one set of names),
as `appliance train` does with a gateway's store. Rows are all exported, anomalous or not: the
reader chooses (training leaves out anomalous and non-finite rows and a real fault's windows,
and keeps a confirmed false alarm's windows as normal).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from appliance.records import FloatArray
from appliance.uplink.schema.verdicts import (
    NO_LABEL,
    JudgedEpisode,
    judged_episodes,
    label_windows,
)
from receiver.db import Database, StoredFeature
from receiver.errors import ReceiverError

EXPORT_FORMAT = "appliance-features/1"
END_OF_TIME = 1e11  # year 5138: "no upper bound" for both backends


@dataclass(frozen=True, eq=False)
class FeatureExport:
    gateway: str
    asset: str
    names: tuple[str, ...]
    seq: npt.NDArray[np.int64]
    window_end: FloatArray
    values: FloatArray
    anomalous: npt.NDArray[np.bool_]
    scored: npt.NDArray[np.bool_]
    skipped_other_names: int
    verdict: npt.NDArray[np.str_] | None = None
    """Per row, the verdict on its anomaly episode or "" (None: no verdict is known)."""

    def labels(self) -> npt.NDArray[np.str_]:
        return self.verdict if self.verdict is not None else np.full(len(self.seq), NO_LABEL)

    def summary(self) -> str:
        rows = len(self.seq)
        span = f"{self.window_end[0]:.3f} .. {self.window_end[-1]:.3f}" if rows else "-"
        return (
            f"{self.gateway}/{self.asset}: {rows} rows x {len(self.names)} features "
            f"(window ends {span}), {int(self.anomalous.sum())} scored anomalous, "
            f"{rows - int(self.scored.sum())} unscored, "
            f"{self.skipped_other_names} skipped (other feature names), "
            f"{int((self.labels() == 'not_a_fault').sum())} in episodes judged not a fault, "
            f"{int((self.labels() == 'real_fault').sum())} in real faults"
        )


def build_export(
    gateway: str,
    asset: str,
    rows: Sequence[StoredFeature],
    names_by_schema: Mapping[int, tuple[str, ...]],
    flags: Mapping[float, bool],
    episodes: Sequence[JudgedEpisode] = (),
) -> FeatureExport:
    """The rows with the newest row's feature names, with their score flags and the verdicts
    of the judged `episodes` of the asset they fall in (pure)."""
    newest = rows[-1].schema_id
    kept = [row for row in rows if row.schema_id == newest]
    names = names_by_schema[newest]
    times = np.array([row.t for row in kept], dtype=np.float64)
    return FeatureExport(
        gateway=gateway,
        asset=asset,
        names=names,
        seq=np.array([row.seq for row in kept], dtype=np.int64),
        window_end=times,
        values=np.stack([row.values for row in kept]).reshape(len(kept), len(names)),
        anomalous=np.array([flags.get(row.t, False) for row in kept], dtype=np.bool_),
        scored=np.array([row.t in flags for row in kept], dtype=np.bool_),
        skipped_other_names=len(rows) - len(kept),
        verdict=label_windows(times, episodes),
    )


def write_export(export: FeatureExport, path: Path) -> None:
    save_npz(
        path,
        format=np.array(EXPORT_FORMAT),
        gateway=np.array(export.gateway),
        asset=np.array(export.asset),
        names=np.array(export.names, dtype=np.str_),
        seq=export.seq,
        window_end=export.window_end,
        values=export.values,
        anomalous=export.anomalous,
        scored=export.scored,
        skipped_other_names=np.array(export.skipped_other_names),
        verdict=export.labels(),
    )


def save_npz(path: Path, **arrays: npt.NDArray[Any]) -> None:
    """Write atomically (a temporary file in the same directory, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            np.savez(out, **arrays)  # type: ignore[arg-type]
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_export(path: Path) -> FeatureExport:
    """Read a file written by write_export; ReceiverError if it is not one."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["format"]) != EXPORT_FORMAT:
                raise ReceiverError(f"{path}: format {str(data['format'])!r}, not {EXPORT_FORMAT}")
            return FeatureExport(
                gateway=str(data["gateway"]),
                asset=str(data["asset"]),
                names=tuple(str(name) for name in data["names"]),
                seq=data["seq"],
                window_end=data["window_end"],
                values=data["values"],
                anomalous=data["anomalous"],
                scored=data["scored"],
                skipped_other_names=int(data["skipped_other_names"]),
                verdict=data.get("verdict"),
            )
    except (OSError, KeyError, ValueError) as exc:
        raise ReceiverError(f"{path} is not a feature export: {exc}") from exc


async def export_features(
    database: Database,
    gateway: str,
    asset: str,
    out: Path,
    since: float | None = None,
    until: float | None = None,
) -> FeatureExport:
    """Export the asset's features with since <= window end < until to `out`."""
    start, end = since or 0.0, END_OF_TIME if until is None else until
    gateways = await database.gateways()
    if gateway not in gateways:
        raise ReceiverError(f"no gateway {gateway!r} in the database (it has: {listed(gateways)})")
    rows = await database.features(gateway, asset, start, end)
    if not rows:
        assets = await database.assets(gateway)
        raise ReceiverError(
            f"no features of {gateway}/{asset} in that time span "
            f"(the gateway's assets with features: {listed(assets)})"
        )
    schema_ids = {row.schema_id for row in rows}
    names = {schema_id: await database.schema_names(schema_id) for schema_id in schema_ids}
    flags = await database.score_flags(gateway, asset, start, end)
    episodes = judged_episodes(await database.judging_alerts(gateway, asset))
    export = build_export(gateway, asset, rows, names, flags, episodes)
    write_export(export, out)
    return export


def listed(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "none"
