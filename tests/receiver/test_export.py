"""Exporting an asset's features for retraining, on SQLite and PostgreSQL."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from receiver_helpers import score, vector

from appliance.records import FeatureVector
from appliance.uplink.schema import SeqRecord, split_range
from receiver.db import open_database
from receiver.errors import ReceiverError
from receiver.export import EXPORT_FORMAT, export_features, read_export

T0 = 1_767_225_600.0
OLD_NAMES = ("rms_x", "rms_y")
NEW_NAMES = ("rms_x", "rms_y", "kurtosis_x", "peak_hz")


def history() -> list[SeqRecord]:
    """10 windows with the old names, then 20 with new ones (every 5th anomalous, the last
    unscored), and another asset's window in between."""
    rows: list[SeqRecord] = []
    seq = 0
    for i in range(30):
        t = T0 + i
        seq += 1
        rows.append((seq, vector(t, names=OLD_NAMES if i < 10 else NEW_NAMES)))
        if i < 29:
            seq += 1
            rows.append((seq, score(t, anomalous=i % 5 == 0)))
        if i == 15:
            seq += 1
            rows.append((seq, vector(t, asset="fan")))
    return rows


async def test_the_newest_names_are_exported_with_their_score_flags(
    any_db_url: str, tmp_path: Path
) -> None:
    rows = history()
    database = await open_database(any_db_url)
    try:
        for part in split_range("gw-a", 0, rows[-1][0], rows):
            await database.ingest(part, T0)
        out = tmp_path / "pump-1.npz"
        export = await export_features(database, "gw-a", "pump-1", out)
    finally:
        await database.close()

    read = read_export(out)
    wanted = [(seq, r) for seq, r in rows if isinstance(r, FeatureVector) and r.asset == "pump-1"]
    newest = [(seq, r) for seq, r in wanted if r.names == NEW_NAMES]
    assert read.names == NEW_NAMES
    assert read.skipped_other_names == export.skipped_other_names == 10
    assert read.seq.tolist() == [seq for seq, _ in newest]
    assert read.window_end.tolist() == [r.window_end for _, r in newest]
    np.testing.assert_array_equal(read.values, np.stack([r.values for _, r in newest]))
    assert read.anomalous.tolist() == [i % 5 == 0 for i in range(10, 30)]
    assert read.scored.tolist() == [True] * 19 + [False]
    assert (read.gateway, read.asset) == ("gw-a", "pump-1")


async def test_since_and_until_bound_the_window_ends(tmp_path: Path) -> None:
    rows: list[SeqRecord] = [(i + 1, vector(T0 + i, names=NEW_NAMES)) for i in range(10)]
    database = await open_database(f"sqlite:///{tmp_path / 'rx.db'}")
    try:
        await database.ingest(split_range("gw-a", 0, 10, rows)[0], T0)
        export = await export_features(
            database, "gw-a", "pump-1", tmp_path / "x.npz", since=T0 + 2, until=T0 + 5
        )
        with pytest.raises(ReceiverError, match="in that time span"):
            await export_features(database, "gw-a", "pump-1", tmp_path / "y.npz", since=T0 + 99)
    finally:
        await database.close()
    assert export.window_end.tolist() == [T0 + 2, T0 + 3, T0 + 4]
    assert not (tmp_path / "y.npz").exists()


async def test_nan_values_survive_the_export(tmp_path: Path) -> None:
    special = FeatureVector("pump-1", T0, OLD_NAMES, np.array([math.nan, 2.0]))
    database = await open_database(f"sqlite:///{tmp_path / 'rx.db'}")
    try:
        await database.ingest(split_range("gw-a", 0, 1, [(1, special)])[0], T0)
        await export_features(database, "gw-a", "pump-1", tmp_path / "x.npz")
    finally:
        await database.close()
    values = read_export(tmp_path / "x.npz").values
    assert values.shape == (1, 2) and math.isnan(values[0, 0]) and values[0, 1] == 2.0


def test_a_file_that_is_not_an_export_is_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "other.npz", format=np.array("something-else"))
    with pytest.raises(ReceiverError, match=f"not {EXPORT_FORMAT}"):
        read_export(tmp_path / "other.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ReceiverError, match="is not a feature export"):
        read_export(tmp_path / "junk.npz")
