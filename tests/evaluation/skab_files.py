"""Small SKAB-format CSV files written for tests."""

from __future__ import annotations

from pathlib import Path

HEADER = "datetime;Pressure;Temperature;anomaly;changepoint"


def skab_lines(rows: int, anomalous: range = range(0), changepoints: tuple[int, ...] = ()) -> str:
    """`rows` rows one second apart from 2020-03-09 10:00:00; a pressure step while anomalous."""
    lines = [HEADER]
    for row in range(rows):
        minutes, seconds = divmod(row, 60)
        hours, minutes = divmod(minutes, 60)
        stamp = f"2020-03-09 {10 + hours:02d}:{minutes:02d}:{seconds:02d}"
        pressure = 5.0 if row in anomalous else 1.0 + 0.01 * (row % 7)
        temperature = 70.0 + 0.1 * (row % 5)
        anomaly = 1.0 if row in anomalous else 0.0
        changepoint = 1.0 if row in changepoints else 0.0
        lines.append(f"{stamp};{pressure};{temperature};{anomaly};{changepoint}")
    return "\n".join(lines) + "\n"


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
