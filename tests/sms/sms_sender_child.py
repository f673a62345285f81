"""A process that runs the real SMS sender on a store against a modem port, for the kill -9
tests: `python sms_sender_child.py STORE.db PORT`. SIGTERM stops it cleanly (exit 0); the tests
kill it with SIGKILL in the middle of a send."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' shared helpers
sys.path.insert(0, str(Path(__file__).resolve().parent))  # sms_helpers

from sms_helpers import FAST_LINK

from appliance.logging import configure_logging
from appliance.sms.sender import SenderSettings, SmsSender
from appliance.store import Store, StoreSettings

SETTINGS = SenderSettings(retry_initial_s=0.05, retry_max_s=0.2, give_up_after_s=3600.0)


async def main(db: str, port: str) -> None:
    store = await Store.open(StoreSettings(Path(db)))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    sender = SmsSender(store.sms_queue, port, FAST_LINK, SETTINGS)
    task = asyncio.create_task(sender.run())
    print("running", flush=True)
    await stop.wait()
    task.cancel()
    await asyncio.wait([task])
    await store.close()


if __name__ == "__main__":
    configure_logging("info")
    asyncio.run(main(sys.argv[1], sys.argv[2]))
