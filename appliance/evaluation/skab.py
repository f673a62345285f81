"""SKAB-format CSV files: find them under a directory and load them into typed arrays.

Format (Skoltech Anomaly Benchmark): ';'-separated text with a header row; a `datetime` column
("2020-03-09 10:14:33"), one column per sensor, and the labels `anomaly` (0/1 per row) and
`changepoint` (1 on the rows where a change happens). Anomaly-free files have no label columns;
a missing label column is read as all zeros and `has_labels` says whether any was present.

The timestamps carry no zone; they are read as UTC, which only shifts every time by the same
amount and so changes no window or metric. Times must increase strictly: the changepoint windows
are defined in time, and rows out of order would make them meaningless.

A file that cannot be read raises SkabFormatError naming the file and the problem (the missing
column, or the line and column of a value that does not parse), so an evaluation can skip it and
report why instead of stopping.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from appliance.errors import ApplianceError
from appliance.records import FloatArray

BoolArray = npt.NDArray[np.bool_]

DELIMITER = ";"
TIME_COLUMN = "datetime"
ANOMALY_COLUMN = "anomaly"
CHANGEPOINT_COLUMN = "changepoint"
LABEL_COLUMNS = (ANOMALY_COLUMN, CHANGEPOINT_COLUMN)


class EvaluationError(ApplianceError):
    """An evaluation cannot run (no input, unusable output directory)."""


class SkabFormatError(EvaluationError):
    """A file is not a readable SKAB CSV; the message names the file and the problem."""


@dataclass(frozen=True)
class SkabRecording:
    """One SKAB file: row i was measured at `times[i]` and has `features[i]` and its labels."""

    path: Path
    times: FloatArray
    """UTC seconds since the Unix epoch, strictly increasing."""
    datetimes: tuple[str, ...]
    """The `datetime` column as written in the file (copied into prediction files)."""
    feature_names: tuple[str, ...]
    features: FloatArray
    """(rows, len(feature_names)), finite values."""
    anomaly: BoolArray
    changepoint: BoolArray
    has_labels: bool
    """False for an anomaly-free file without label columns (labels then all False)."""

    @property
    def rows(self) -> int:
        return len(self.times)


def find_skab_csvs(directory: Path, exclude: Path | None = None) -> list[Path]:
    """Every *.csv under `directory` (recursively), in natural order, skipping `exclude`'s tree.

    Natural order sorts valve1/2.csv before valve1/10.csv. `exclude` keeps an output directory
    placed inside the input directory from being read back as input.
    """
    if not directory.is_dir():
        raise EvaluationError(f"{directory}: not a directory")
    excluded = exclude.resolve() if exclude is not None else None
    paths = [
        path
        for path in directory.rglob("*.csv")
        if path.is_file() and not (excluded and path.resolve().is_relative_to(excluded))
    ]
    return sorted(paths, key=lambda path: _natural_key(path.relative_to(directory)))


def load_skab_csv(path: Path) -> SkabRecording:
    """Read one SKAB CSV; raise SkabFormatError (file and problem named) if it is not one."""
    try:
        with path.open(newline="", encoding="utf-8") as stream:
            lines = list(csv.reader(stream, delimiter=DELIMITER))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SkabFormatError(f"{path}: cannot read: {exc}") from exc
    if not lines:
        raise SkabFormatError(f"{path}: empty file (no header)")
    header = [name.strip() for name in lines[0]]
    columns = _column_layout(path, header)
    body = [(number, fields) for number, fields in enumerate(lines[1:], start=2) if fields]
    if not body:
        raise SkabFormatError(f"{path}: no data rows")
    times = np.empty(len(body))
    datetimes: list[str] = []
    features = np.empty((len(body), len(columns.features)))
    labels = {name: np.zeros(len(body), dtype=np.bool_) for name in LABEL_COLUMNS}
    for row, (line, fields) in enumerate(body):
        if len(fields) != len(header):
            raise SkabFormatError(
                f"{path}: line {line}: {len(fields)} fields, the header has {len(header)}"
            )
        datetimes.append(fields[columns.time].strip())
        times[row] = _parse_time(path, line, datetimes[-1])
        if row and times[row] <= times[row - 1]:
            raise SkabFormatError(f"{path}: line {line}: time {datetimes[-1]} does not increase")
        for feature, index in enumerate(columns.features):
            features[row, feature] = _parse_value(path, line, header[index], fields[index])
        for name, index in columns.labels.items():
            labels[name][row] = _parse_label(path, line, name, fields[index])
    for array in (times, features, *labels.values()):
        array.setflags(write=False)
    return SkabRecording(
        path=path,
        times=times,
        datetimes=tuple(datetimes),
        feature_names=tuple(header[index] for index in columns.features),
        features=features,
        anomaly=labels[ANOMALY_COLUMN],
        changepoint=labels[CHANGEPOINT_COLUMN],
        has_labels=bool(columns.labels),
    )


@dataclass(frozen=True)
class _Columns:
    time: int
    features: tuple[int, ...]
    labels: dict[str, int]


def _column_layout(path: Path, header: Sequence[str]) -> _Columns:
    if TIME_COLUMN not in header:
        raise SkabFormatError(f"{path}: missing column {TIME_COLUMN!r} (header: {list(header)})")
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise SkabFormatError(f"{path}: duplicate columns {duplicates}")
    features = tuple(
        index
        for index, name in enumerate(header)
        if name != TIME_COLUMN and name not in LABEL_COLUMNS
    )
    if not features:
        raise SkabFormatError(f"{path}: no sensor columns besides {TIME_COLUMN} and the labels")
    labels = {name: header.index(name) for name in LABEL_COLUMNS if name in header}
    return _Columns(header.index(TIME_COLUMN), features, labels)


def _parse_time(path: Path, line: int, text: str) -> float:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise SkabFormatError(f"{path}: line {line}: {TIME_COLUMN}: not a time: {text!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _parse_value(path: Path, line: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise SkabFormatError(f"{path}: line {line}: {column}: not a number: {text!r}") from exc
    if not math.isfinite(value):
        raise SkabFormatError(f"{path}: line {line}: {column}: not a finite number: {text!r}")
    return value


def _parse_label(path: Path, line: int, column: str, text: str) -> bool:
    value = _parse_value(path, line, column, text)
    if value not in (0.0, 1.0):
        raise SkabFormatError(f"{path}: line {line}: {column}: label must be 0 or 1, got {text!r}")
    return value == 1.0


def _natural_key(path: Path) -> tuple[tuple[int, int | str], ...]:
    """valve1/2.csv < valve1/10.csv: digit runs compare as numbers."""
    parts = re.split(r"(\d+)", path.as_posix())
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in parts if part)
