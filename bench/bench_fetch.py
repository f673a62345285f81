"""Fetch on demand (PROTOCOL.md, "Fetch on demand"): how long one asset-hour takes to land.

A gateway store holds `--seconds` (3,600: one asset-hour) feature vectors of the demo's width
(49 features) with their scores, one pair a second (7,200 records). A real `appliance-receiver`
(subprocess, SQLite) and the gateway's Uplink (in this process, default settings) run against
a mosquitto deployed as receiver/mosquitto/mosquitto.conf (TLS, passwords, the shipped ACL).
First everything is delivered the ordinary way; then the asset's rows are deleted from the
receiver's database (what the summary profile never sends), and `appliance-receiver fetch`'s
code (receiver/fetch.py, in this process) asks for the hour and waits until it landed. Timed:
from the command's start (connect, status, command) to the last record counted in the database.

Runs, same store, same broker: (1) the shipped replay rate (1,000 records/s), every record new;
(2) the same again, every record already there (duplicates, nothing new); (3) baseline: the
replay cap lifted (replay_records_per_s 1e9), every record new. Ratio: (1) / (3).

    .venv/bin/python bench/bench_fetch.py [--seconds 3600]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from uplink_bench_common import (
    ASSET,
    GATEWAY,
    PREFIX,
    T0,
    Broker,
    demo_records,
    deployed_broker,
    new_tls,
    start_receiver,
)

from appliance.config import BrokerAddress
from appliance.store import Store, StoreSettings
from appliance.uplink.publisher import Uplink
from appliance.uplink.settings import UplinkSettings
from receiver.db import open_database
from receiver.fetch import EXIT_LANDED, FetchRequest, fetch
from receiver.settings import parse_broker_url

MODELLER = "modeller"


async def main(seconds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-fetch-") as tmp:
        work = Path(tmp)
        with deployed_broker(new_tls(work), users=(GATEWAY, MODELLER)) as broker:
            rx_db = work / "receiver.db"
            receiver = start_receiver(broker, f"sqlite:///{rx_db}", work / "receiver.log")
            try:
                async with await Store.open(StoreSettings(work / "gateway.db")) as store:
                    records = demo_records(seconds)
                    for start in range(0, len(records), 500):
                        await store.recorder.add_records(records[start : start + 500])
                    last = await store.delivery.latest_seq()
                    await run_uplink(broker, store, 1e9, until_acked=last)
                    print(f"{len(records)} records ({seconds} s of {ASSET}) delivered; fetching")
                    runs = [("shipped replay rate, all new", 1000.0, True),
                            ("shipped replay rate, all already there", 1000.0, False),
                            ("baseline: replay cap lifted, all new", 1e9, True)]  # fmt: skip
                    times = []
                    for name, rate, delete in runs:
                        if delete:
                            delete_rows(rx_db)
                        took = await run_uplink(broker, store, rate, fetch_s=seconds, rx_db=rx_db)
                        times.append(took)
                        print(f"  {name}: {len(records)} records in {took:.2f} s, "
                              f"{len(records) / took:,.0f} records/s")  # fmt: skip
                    print(f"  ratio shipped / uncapped time: {times[0] / times[2]:.2f}")
            finally:
                receiver.stop()


async def until(condition: Callable[[], Awaitable[bool]]) -> None:
    while True:
        if await condition():
            return
        await asyncio.sleep(0.02)


async def acked_at_least(store: Store, seq: int) -> bool:
    return await store.delivery.acked_seq() >= seq


def delete_rows(rx_db: Path) -> None:
    with sqlite3.connect(rx_db) as db:
        for table in ("features", "scores", "alerts"):
            db.execute(f"DELETE FROM {table} WHERE asset = ?", (ASSET,))


async def run_uplink(
    broker: Broker,
    store: Store,
    rate: float,
    *,
    until_acked: int | None = None,
    fetch_s: int | None = None,
    rx_db: Path | None = None,
) -> float:
    settings = UplinkSettings(
        gateway=GATEWAY,
        broker=BrokerAddress(True, broker.host, broker.port),
        username=GATEWAY,
        password=broker.credentials[GATEWAY].password,
        ca_file=broker.ca_path,
        prefix=PREFIX,
        replay_records_per_s=rate,
    )
    uplink = Uplink(settings, store.delivery)
    task = asyncio.create_task(uplink.run())
    try:
        await until(lambda: asyncio.sleep(0, uplink.status.connected))
        if until_acked is not None:
            await until(lambda: acked_at_least(store, until_acked))
            return 0.0
        assert fetch_s is not None and rx_db is not None
        database = await open_database(f"sqlite:///{rx_db}")
        request = FetchRequest(GATEWAY, ASSET, T0, T0 + fetch_s + 1, None, 60.0, PREFIX)
        address = parse_broker_url(broker.url(MODELLER))
        started = time.perf_counter()
        try:
            code = await fetch(request, address, broker.ca_path, database, lambda _: None)
        finally:
            await database.close()
        took = time.perf_counter() - started
        assert code == EXIT_LANDED, code
        return took
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3600)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.seconds)))
