"""The web tests also build signed model bundles with tests/ota's helpers (ota_helpers)."""

import sys
from pathlib import Path

OTA_TESTS = str(Path(__file__).resolve().parents[1] / "ota")
if OTA_TESTS not in sys.path:
    sys.path.append(OTA_TESTS)
