"""`appliance train` on a real gateway store file: which rows, the bundle, and the refusals."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from appliance.cli import main
from appliance.detect.bundle import load_bundle
from appliance.records import FeatureVector, FloatArray, Score
from appliance.store import Store, StoredRecord, StoreSettings
from appliance.training.from_store import (
    ADVISED_SPAN_S,
    MIN_TRAINING_ROWS,
    load_store_rows,
    short_span_warning,
)
from appliance.training.synthetic import T0_UTC, LatentFactorSource
from receiver.export import FeatureExport, write_export

ASSET = "pump-1"
OLD_SCHEMA_WINDOWS = 50
NEW_SCHEMA_START = T0_UTC + 100.0
NEW_SCHEMA_WINDOWS = 400
ANOMALOUS_EVERY = 20
NAN_WINDOW = 7


@dataclass(frozen=True)
class StoredAsset:
    """What build_store wrote for ASSET's newest schema."""

    times: FloatArray
    anomalous: FloatArray
    """Times of the windows the gateway scored anomalous."""
    non_finite: float
    """Time of the window with a NaN value."""

    @property
    def usable(self) -> FloatArray:
        left_out = {*self.anomalous, self.non_finite}
        return np.array([t for t in self.times if t not in left_out])


@pytest.fixture(scope="module")
def gateway_store(
    source: LatentFactorSource, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, StoredAsset]:
    path = tmp_path_factory.mktemp("gateway") / "appliance.db"
    return path, asyncio.run(build_store(path, source))


async def build_store(path: Path, source: LatentFactorSource) -> StoredAsset:
    """An older schema of ASSET, then its newest one with scores (every ANOMALOUS_EVERY-th window
    broken and scored anomalous, one window with a NaN), and another asset."""
    rng = np.random.default_rng(11)
    records: list[StoredRecord] = []
    old_names = source.feature_names[:-1]
    for i, row in enumerate(source.normal_rows(rng, OLD_SCHEMA_WINDOWS)):
        records.append(FeatureVector(ASSET, T0_UTC + i, old_names, row[:-1]))
    times = NEW_SCHEMA_START + np.arange(NEW_SCHEMA_WINDOWS, dtype=np.float64)
    rows = source.normal_rows(rng, NEW_SCHEMA_WINDOWS)
    anomalous = times[::ANOMALOUS_EVERY]
    rows[::ANOMALOUS_EVERY] = source.broken_rows(rng, len(anomalous), shift=8.0)
    rows[NAN_WINDOW, 3] = np.nan
    for t, row in zip(times, rows, strict=True):
        broken = bool(t in anomalous)
        records.append(FeatureVector(ASSET, float(t), source.feature_names, row))
        records.append(Score(ASSET, float(t), "gateway-model", 1.0 + 9 * broken, 2.0, broken))
    for i, row in enumerate(source.normal_rows(rng, 30)):
        records.append(FeatureVector("compressor-2", T0_UTC + i, ("a", "b"), row[:2]))
    async with await Store.open(StoreSettings(path)) as store:
        await store.recorder.add_records(records)
    return StoredAsset(times, anomalous, float(times[NAN_WINDOW]))


def iso(t: float) -> str:
    return datetime.fromtimestamp(t).astimezone().isoformat()


def utc_seconds(text: str | None) -> float:
    assert text is not None
    return datetime.fromisoformat(text).timestamp()


def test_train_writes_a_bundle_of_the_newest_schema_without_anomalous_windows(
    gateway_store: tuple[Path, StoredAsset],
    source: LatentFactorSource,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, stored = gateway_store
    out = tmp_path / "bundle"
    argv = ["train", "--store", str(path), "--asset", ASSET, "--out", str(out)]

    status = main([*argv, "--version", "2026.02", "--epochs", "2"])

    assert status == 0
    bundle = load_bundle(out)
    manifest = bundle.manifest
    assert manifest.asset == ASSET
    assert manifest.version == "2026.02"
    assert manifest.feature_names == source.feature_names
    assert manifest.data_span.rows == len(stored.usable)
    assert utc_seconds(manifest.data_span.start_utc) == stored.usable.min()
    assert utc_seconds(manifest.data_span.end_utc) == stored.usable.max()
    report = capsys.readouterr().out
    assert f"{len(stored.usable)} used" in report
    assert f"{OLD_SCHEMA_WINDOWS} of other feature schemas" in report
    assert f"{len(stored.anomalous)} scored anomalous by the gateway" in report
    assert "1 with non-finite values" in report
    assert manifest.model_sha256 in report
    assert bundle.bundle_id in report
    minutes = (stored.usable.max() - stored.usable.min()) / 60
    assert f"warning: the training windows span only {minutes:.1f} minutes" in report


def test_training_on_an_hour_or_more_of_windows_is_not_warned_about() -> None:
    hour = np.array([T0_UTC, T0_UTC + 1800.0, T0_UTC + ADVISED_SPAN_S])

    assert short_span_warning(hour) == []
    assert len(short_span_warning(hour[:2])) == 1


def test_the_loader_leaves_out_exactly_the_anomalous_and_non_finite_windows(
    gateway_store: tuple[Path, StoredAsset],
) -> None:
    path, stored = gateway_store

    default = load_store_rows(path, ASSET)
    kept = load_store_rows(path, ASSET, keep_anomalous=True)

    assert np.array_equal(default.window_times, stored.usable)
    assert not set(default.window_times) & set(stored.anomalous)
    assert set(stored.anomalous) <= set(kept.window_times)
    assert len(kept.window_times) == NEW_SCHEMA_WINDOWS - 1
    assert "scored anomalous by the gateway" not in kept.skipped
    assert any("--keep-anomalous" in note for note in kept.notes)
    assert np.isfinite(default.rows).all() and default.rows.shape[1] == len(default.feature_names)


def test_since_and_until_select_window_ends(gateway_store: tuple[Path, StoredAsset]) -> None:
    path, stored = gateway_store
    since, until = float(stored.times[100]), float(stored.times[300])

    rows = load_store_rows(path, ASSET, since=since, until=until)

    expected = stored.usable[(stored.usable >= since) & (stored.usable < until)]
    assert np.array_equal(rows.window_times, expected)
    assert rows.skipped["outside --since/--until"] == OLD_SCHEMA_WINDOWS + 200
    assert rows.skipped["of other feature schemas"] == 0


def test_a_missing_store_file_is_refused_and_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nowhere.db"
    status = main(["train", "--store", str(path), "--asset", ASSET, "--out", str(tmp_path / "b")])
    assert status != 0
    assert f"{path}: no such database file" in capsys.readouterr().err
    assert not path.exists()


def test_an_unknown_asset_is_refused_listing_the_stored_assets(
    gateway_store: tuple[Path, StoredAsset], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = gateway_store
    status = main(["train", "--store", str(path), "--asset", "fan-9", "--out", str(tmp_path / "b")])
    assert status != 0
    assert "no feature vectors of asset 'fan-9' (assets: compressor-2, pump-1)" in (
        capsys.readouterr().err
    )


def test_too_few_rows_are_refused_naming_the_minimum(
    gateway_store: tuple[Path, StoredAsset], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, stored = gateway_store
    argv = ["train", "--store", str(path), "--asset", ASSET, "--out", str(tmp_path / "b")]
    status = main([*argv, "--until", iso(float(stored.times[50]))])
    assert status != 0
    error = capsys.readouterr().err
    assert f"training needs at least {MIN_TRAINING_ROWS}" in error
    assert not (tmp_path / "b").exists()


def test_an_existing_bundle_directory_is_not_overwritten(
    gateway_store: tuple[Path, StoredAsset], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = gateway_store
    out = tmp_path / "in-service"
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    status = main(["train", "--store", str(path), "--asset", ASSET, "--out", str(out)])
    assert status != 0
    assert "not an empty directory" in capsys.readouterr().err
    assert (out / "manifest.json").read_text() == "{}"


def test_a_bad_time_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", "--store", "x.db", "--asset", ASSET, "--out", str(tmp_path / "b")]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--since", "last tuesday"])
    assert exit_info.value.code != 0
    assert "not an ISO 8601 time: 'last tuesday'" in capsys.readouterr().err


def test_train_from_a_receiver_export_leaves_out_anomalous_and_non_finite_windows(
    source: LatentFactorSource, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = source.normal_rows(np.random.default_rng(4), 300)
    rows[5, 2] = np.nan
    anomalous = np.zeros(300, dtype=bool)
    anomalous[::25] = True
    times = T0_UTC + np.arange(300.0)
    export = FeatureExport(
        gateway="gw-1",
        asset=ASSET,
        names=source.feature_names,
        seq=np.arange(1, 301, dtype=np.int64),
        window_end=times,
        values=rows,
        anomalous=anomalous,
        scored=np.ones(300, dtype=bool),
        skipped_other_names=0,
    )
    write_export(export, tmp_path / "pump-1.npz")
    out = tmp_path / "bundle"

    argv = ["train", "--features", str(tmp_path / "pump-1.npz"), "--out", str(out)]
    status = main([*argv, "--epochs", "2"])

    assert status == 0
    manifest = load_bundle(out).manifest
    assert manifest.asset == ASSET
    assert manifest.feature_names == source.feature_names
    assert manifest.data_span.rows == 300 - 12 - 1
    report = capsys.readouterr().out
    assert "12 scored anomalous by the gateway" in report
    assert "1 with non-finite values" in report


def test_store_needs_an_asset_and_a_bad_export_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "not-an-export.npz"
    np.savez(bad, something=np.arange(3))
    assert main(["train", "--features", str(bad), "--out", str(tmp_path / "b")]) == 2
    assert "not a feature export (missing format" in capsys.readouterr().err
    store = ["train", "--store", str(tmp_path / "x.db"), "--out", str(tmp_path / "c")]
    assert main(store) == 2
    assert "--asset is required with --store" in capsys.readouterr().err
