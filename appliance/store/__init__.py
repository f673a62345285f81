"""The local store: the only package that imports sqlite3 (design: store.py, database.py)."""

from appliance.store.codec import StoredRecord
from appliance.store.delivery import Delivery, OutboxRange, OutboxStats
from appliance.store.migrations import MIGRATIONS, Migration
from appliance.store.outbox import History
from appliance.store.recorder import Recorder
from appliance.store.settings import StoreSettings, store_settings
from appliance.store.sms import SmsQueue
from appliance.store.states import DetectorStates, StoredAck
from appliance.store.stats import EvictionReport, StoreStats
from appliance.store.store import Store, StorePragmas, is_disk_full
from appliance.store.writer import run_store_writer

__all__ = [
    "MIGRATIONS",
    "Delivery",
    "DetectorStates",
    "EvictionReport",
    "History",
    "Migration",
    "OutboxRange",
    "OutboxStats",
    "Recorder",
    "SmsQueue",
    "Store",
    "StorePragmas",
    "StoreSettings",
    "StoreStats",
    "StoredAck",
    "StoredRecord",
    "is_disk_full",
    "run_store_writer",
    "store_settings",
]
