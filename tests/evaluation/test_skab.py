"""Finding and loading SKAB-format CSVs, and the errors for files that are not."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from appliance.evaluation.skab import (
    EvaluationError,
    SkabFormatError,
    find_skab_csvs,
    load_skab_csv,
)

from .skab_files import skab_lines, write_text

SKAB_SENSORS = (
    "Accelerometer1RMS",
    "Accelerometer2RMS",
    "Current",
    "Pressure",
    "Temperature",
    "Thermocouple",
    "Voltage",
    "Volume Flow RateRMS",
)


def test_real_file_loads_into_typed_arrays(skab_valve1: Path) -> None:
    recording = load_skab_csv(skab_valve1 / "0.csv")

    assert recording.feature_names == SKAB_SENSORS
    assert recording.features.shape == (1147, 8)
    assert recording.features.dtype == np.float64
    assert recording.times[0] == datetime(2020, 3, 9, 10, 14, 33, tzinfo=UTC).timestamp()
    assert recording.datetimes[0] == "2020-03-09 10:14:33"
    assert np.all(np.diff(recording.times) > 0)
    assert recording.has_labels
    assert np.flatnonzero(recording.changepoint).tolist() == [573, 630, 917, 974]
    assert recording.anomaly[573] and not recording.anomaly[572]
    assert recording.features[0, 0] == pytest.approx(0.0265878)


def test_real_anomaly_free_file_has_no_labels(skab_valve1: Path) -> None:
    path = skab_valve1.parent / "anomaly-free" / "anomaly-free.csv"
    recording = load_skab_csv(path)

    assert not recording.has_labels
    assert recording.feature_names == SKAB_SENSORS
    assert recording.rows == 9405
    assert not recording.anomaly.any() and not recording.changepoint.any()


def test_all_zero_labels_load_as_labelled_but_normal(tmp_path: Path) -> None:
    recording = load_skab_csv(write_text(tmp_path / "quiet.csv", skab_lines(5)))

    assert recording.has_labels
    assert recording.feature_names == ("Pressure", "Temperature")
    assert not recording.anomaly.any()


def test_loaded_arrays_are_read_only(tmp_path: Path) -> None:
    recording = load_skab_csv(write_text(tmp_path / "a.csv", skab_lines(3)))

    with pytest.raises(ValueError, match="read-only"):
        recording.features[0, 0] = 1.0


def test_finds_csvs_recursively_in_natural_order_and_skips_the_output_tree(
    tmp_path: Path,
) -> None:
    for name in ("valve1/10.csv", "valve1/2.csv", "anomaly-free/a.csv", "out/valve1/2.pred.csv"):
        write_text(tmp_path / name, skab_lines(2))
    write_text(tmp_path / "notes.txt", "not a csv")

    found = find_skab_csvs(tmp_path, exclude=tmp_path / "out")

    assert [path.relative_to(tmp_path).as_posix() for path in found] == [
        "anomaly-free/a.csv",
        "valve1/2.csv",
        "valve1/10.csv",
    ]


def test_missing_directory_is_an_evaluation_error(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match="not a directory"):
        find_skab_csvs(tmp_path / "absent")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty file"),
        ("time;Pressure\n2020-03-09 10:00:00;1.0\n", "missing column 'datetime'"),
        ("datetime;anomaly;changepoint\n2020-03-09 10:00:00;0;0\n", "no sensor columns"),
        ("datetime;Pressure;Pressure\n2020-03-09 10:00:00;1;1\n", "duplicate columns"),
        ("datetime;Pressure\n", "no data rows"),
        ("datetime;Pressure\n2020-03-09 10:00:00;1.0\n2020-03-09 10:00:01;x\n", "line 3: Pressure"),
        ("datetime;Pressure\n2020-03-09 10:00:00;nan\n", "line 2: Pressure: not a finite"),
        ("datetime;Pressure\n2020-03-09 10:00:00;1.0;2.0\n", "line 2: 3 fields"),
        ("datetime;Pressure\nyesterday;1.0\n", "line 2: datetime: not a time"),
        (
            "datetime;Pressure\n2020-03-09 10:00:01;1.0\n2020-03-09 10:00:01;1.0\n",
            "line 3: time 2020-03-09 10:00:01 does not increase",
        ),
        ("datetime;Pressure;anomaly\n2020-03-09 10:00:00;1.0;2\n", "line 2: anomaly: label"),
    ],
)
def test_bad_files_raise_errors_naming_file_and_problem(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = write_text(tmp_path / "bad.csv", text)

    with pytest.raises(SkabFormatError) as error:
        load_skab_csv(path)

    assert str(error.value).startswith(f"{path}: ")
    assert problem in str(error.value)


def test_undecodable_file_is_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "binary.csv"
    path.write_bytes(b"datetime;P\n\xff\xfe\x00;1\n")

    with pytest.raises(SkabFormatError, match="cannot read"):
        load_skab_csv(path)
