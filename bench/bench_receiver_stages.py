"""Where the receiver's CPU goes per record, stage by stage, binary against JSON in the same run.

The messages of bench_receiver.py (a day of one asset: a 49-feature vector and its score per
second, cut as the Uplink cuts a backlog), decoded with decode_part and inserted with the
receiver's own SQL, rows and connection settings (receiver/db/sqlite.py: WAL, synchronous=FULL,
16 KiB pages), bench_receiver's 32 parts a transaction, in this process, timed per stage (wall
and CPU): decode, row building, the features and scores executemany, COMMIT (with its fsync).
What it leaves out, and bench_receiver.py's `appliance-receiver` run includes: the part rows,
the gateway row and the ack chain (ingest.py), MQTT and TLS, the event loop.

    .venv/bin/python bench/bench_receiver_stages.py [--seconds 86400]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_receiver import WINDOW, uplink_messages

from appliance.records import FeatureVector
from appliance.uplink.schema import Part, WireFormat, decode_part
from receiver.db.rows import feature_rows, names_json, names_key, score_rows
from receiver.db.sqlite import MIGRATIONS, STATEMENTS, connector, values_to_blob

STAGES = ("decode", "rows", "insert features", "insert scores", "commit")


def measure(fmt: WireFormat, seconds: int) -> tuple[int, float, float, dict[str, float]]:
    """(records, wall s, CPU s, CPU s per stage)."""
    messages, records = uplink_messages(seconds, fmt)
    cpu = dict.fromkeys(STAGES, 0.0)
    with tempfile.TemporaryDirectory(prefix="bench-receiver-stages-") as work:
        db = connector(Path(work) / "receiver.db")
        assert isinstance(db, sqlite3.Connection)
        for statement in MIGRATIONS[0].sql.split(";"):
            if statement.strip():
                db.execute(statement)
        wall_at, cpu_at = time.perf_counter(), time.process_time()
        for start in range(0, len(messages), WINDOW):
            mark = time.process_time()
            parts = [
                decode_part(payload, topic) for topic, payload in messages[start : start + WINDOW]
            ]
            cpu["decode"] += time.process_time() - mark
            db.execute("BEGIN IMMEDIATE")
            for part in parts:
                insert(db, part, cpu)
            mark = time.process_time()
            db.execute("COMMIT")
            cpu["commit"] += time.process_time() - mark
        wall, total = time.perf_counter() - wall_at, time.process_time() - cpu_at
        db.close()
    return records, wall, total, cpu


def insert(db: sqlite3.Connection, part: Part, cpu: dict[str, float]) -> None:
    mark = time.process_time()
    if part.kind == "features":
        ids = {}
        for names in {r.names for _, r in part.records if isinstance(r, FeatureVector)}:
            db.execute(STATEMENTS.insert_schema, (names_key(names), names_json(names)))
            row = db.execute(STATEMENTS.select_schema_id, (names_key(names),)).fetchone()
            ids[names] = int(row[0])
        rows, sql, stage = feature_rows(part, ids, values_to_blob), STATEMENTS.insert_features, "f"
    else:
        rows, sql, stage = score_rows(part), STATEMENTS.insert_scores, "s"
    cpu["rows"] += time.process_time() - mark
    mark = time.process_time()
    db.executemany(sql, rows)
    cpu["insert features" if stage == "f" else "insert scores"] += time.process_time() - mark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=86_400, help="1 vector + 1 score per s")
    args = parser.parse_args()
    per_cpu_s = {}
    formats: tuple[WireFormat, ...] = ("binary", "json")
    for fmt in formats:
        records, wall, total, cpu = measure(fmt, args.seconds)
        per_cpu_s[fmt] = records / total
        print(f"{fmt}: {records:,} records, wall {wall:.2f} s ({records / wall:,.0f}/s), "
              f"CPU {total:.2f} s ({records / total:,.0f} per CPU-second)")  # fmt: skip
        for stage, seconds in cpu.items():
            print(f"  {stage:16s} {seconds:.3f} s CPU = {seconds / records * 1e6:.2f} us a record")
    print(f"binary / json per CPU-second: {per_cpu_s['binary'] / per_cpu_s['json']:.2f}")


if __name__ == "__main__":
    main()
