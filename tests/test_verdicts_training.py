"""Training learns from the operators' verdicts (issue 14, item 5): `appliance train` from a
gateway store and from the receiver's export leaves out the windows of an anomaly confirmed a
real fault (even with --keep-anomalous) and trains on a confirmed false alarm's windows as
normal; an episode nobody judged keeps the gateway's scores."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from appliance.records import Alert, EpisodeVerdict, FeatureVector, Score, VerdictKind
from appliance.store import Store, StoredRecord, StoreSettings
from appliance.training.from_export import load_export_rows
from appliance.training.from_store import load_store_rows
from appliance.uplink.schema.verdicts import judged_episodes, verdict_alert
from receiver.db import StoredFeature
from receiver.export import build_export, read_export, write_export

ASSET = "pump-1"
T0 = 1_767_225_600.0
WINDOWS = 300
FALSE_ALARM = range(100, 120)
"""Windows scored anomalous, then judged not a fault; cleared at 120."""
REAL_FAULT = range(200, 210)
"""Judged a real fault (window 205 scored normal: still left out); cleared at 210."""
UNJUDGED = range(250, 255)
"""Scored anomalous, nobody said anything; cleared at 255."""
NAMES = ("rms", "kurtosis")


def anomalous(i: int) -> bool:
    return (i in FALSE_ALARM or i in REAL_FAULT or i in UNJUDGED) and i != 205


def history() -> tuple[list[StoredRecord], list[Alert]]:
    """The asset's windows and scores, and its alerts: three episodes, two judged (the real
    fault first called a false alarm, then corrected)."""
    rows = np.random.default_rng(3).normal(1.0, 0.1, (WINDOWS, len(NAMES)))
    records: list[StoredRecord] = []
    for i, row in enumerate(rows):
        t = T0 + i
        records += [
            FeatureVector(ASSET, t, NAMES, row),
            Score(ASSET, t, "m", 1.0, 2.0, anomalous(i)),
        ]
    alerts = []
    for episode in (FALSE_ALARM, REAL_FAULT, UNJUDGED):
        start, end = T0 + episode.start, T0 + episode.stop
        alerts += [
            Alert(ASSET, start, "warning", "anomaly_raised", f"{ASSET}: anomaly"),
            Alert(ASSET, end, "warning", "anomaly_cleared", f"{ASSET}: anomaly cleared"),
        ]

    def said(episode: range, verdict: VerdictKind, at: float) -> Alert:
        judged = EpisodeVerdict(ASSET, T0 + episode.start, verdict, "anna", T0 + at)
        return verdict_alert(judged, "warning")

    alerts += [
        said(FALSE_ALARM, "not_a_fault", 130),
        said(REAL_FAULT, "not_a_fault", 211),
        said(REAL_FAULT, "real_fault", 212),
    ]
    return records, alerts


def expected_times(keep_anomalous: bool) -> list[float]:
    real = set(REAL_FAULT) | {REAL_FAULT.stop}  # the clearing window belongs to its episode
    return [
        T0 + i
        for i in range(WINDOWS)
        if i not in real and (keep_anomalous or i in FALSE_ALARM or not anomalous(i))
    ]


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gateway") / "appliance.db"
    records, alerts = history()

    async def build() -> None:
        async with await Store.open(StoreSettings(path)) as store:
            await store.recorder.add_records([*records, *alerts])

    asyncio.run(build())
    return path


@pytest.mark.parametrize("keep_anomalous", [False, True])
def test_train_from_the_store_follows_the_verdicts(store_path: Path, keep_anomalous: bool) -> None:
    rows = load_store_rows(store_path, ASSET, keep_anomalous=keep_anomalous)
    assert rows.window_times.tolist() == expected_times(keep_anomalous)
    assert rows.skipped["in anomalies confirmed a real fault"] == len(REAL_FAULT) + 1
    assert any(
        f"{len(FALSE_ALARM)} windows scored anomalous kept as normal" in n for n in rows.notes
    )
    if not keep_anomalous:
        assert rows.skipped["scored anomalous by the gateway"] == len(UNJUDGED)


@pytest.mark.parametrize("keep_anomalous", [False, True])
def test_train_from_the_receivers_export_follows_the_verdicts(
    tmp_path: Path, keep_anomalous: bool
) -> None:
    records, alerts = history()
    vectors = [r for r in records if isinstance(r, FeatureVector)]
    stored = [StoredFeature(i + 1, v.window_end, 1, v.values) for i, v in enumerate(vectors)]
    flags = {r.t: r.anomalous for r in records if isinstance(r, Score)}
    export = build_export("gw", ASSET, stored, {1: NAMES}, flags, judged_episodes(alerts))
    write_export(export, tmp_path / "pump-1.npz")
    labels = read_export(tmp_path / "pump-1.npz").labels()

    rows = load_export_rows(tmp_path / "pump-1.npz", keep_anomalous=keep_anomalous)
    assert rows.window_times.tolist() == expected_times(keep_anomalous)
    assert [i for i in range(WINDOWS) if labels[i] == "not_a_fault"] == [*FALSE_ALARM, 120]
    assert [i for i in range(WINDOWS) if labels[i] == "real_fault"] == [*REAL_FAULT, 210]


def test_an_export_without_verdicts_reads_as_unlabelled(tmp_path: Path) -> None:
    records, _ = history()
    vectors = [r for r in records if isinstance(r, FeatureVector)]
    stored = [StoredFeature(i + 1, v.window_end, 1, v.values) for i, v in enumerate(vectors)]
    export = build_export("gw", ASSET, stored, {1: NAMES}, {})
    write_export(export, tmp_path / "old.npz")
    with np.load(tmp_path / "old.npz") as data:
        kept = {name: data[name] for name in data.files if name != "verdict"}
    np.savez(tmp_path / "older.npz", **kept)
    assert set(read_export(tmp_path / "older.npz").labels()) == {""}
    assert len(load_export_rows(tmp_path / "older.npz").window_times) == WINDOWS
