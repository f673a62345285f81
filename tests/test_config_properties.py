"""Property tests of check-config's loader (issue 12): any bytes, and any TOML value at any key of
a valid config, give either a valid config or a ConfigError that names the file and the key
(never another exception, never a secret)."""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.cli import load_checked_config
from appliance.config import ApplianceConfig
from appliance.errors import ConfigError

SECRET = "hunter2-secret-value"


@pytest.fixture(scope="module")
def work_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="config-properties-") as name:
        yield Path(name)


def base_document(work_dir: Path) -> dict[str, Any]:
    return {
        "gateway": {"id": "gw-1"},
        "store": {"path": str(work_dir / "store.db")},
        "serial": [{"name": "mcu0", "emulate": {"channels": 1}}],
        "assets": [
            {
                "name": "pump",
                "channels": [
                    {
                        "name": "accel",
                        "kind": "vibration",
                        "rate_hz": 1000,
                        "unit": "g",
                        "valid_range": [-16.0, 16.0],
                        "source": {"serial": "mcu0", "channel": 0},
                    }
                ],
            }
        ],
        "http": {"port": 8080, "token": SECRET},
        "sms": {"emulate": True, "recipients": ["+491701234567"], "timezone": "UTC"},
    }


def toml_value(value: Any) -> str:
    """A value in TOML syntax, inline (tables as inline tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("-inf" if value < 0 else "inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON's escapes are TOML's (a lone surrogate is refused)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_document(document: dict[str, Any]) -> str:
    return "\n".join(f"{key} = {toml_value(value)}" for key, value in document.items()) + "\n"


def load(
    work_dir: Path, content: bytes, secret: str | None = SECRET
) -> ApplianceConfig | ConfigError:
    """check-config's loader on the bytes: the config, or the ConfigError (checked: it names
    the file and never shows `secret`); any other exception fails the test."""
    path = work_dir / "site.toml"
    path.write_bytes(content)
    try:
        return load_checked_config(path)
    except ConfigError as exc:
        assert str(exc).startswith(f"{path}: "), exc
        assert secret is None or secret not in str(exc)
        return exc


def test_the_base_document_is_valid(work_dir: Path) -> None:
    text = toml_document(base_document(work_dir))
    assert isinstance(load(work_dir, text.encode()), ApplianceConfig)


SCALARS = (
    st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["", " ", "\x00", "/dev/ttyACM0 ", "America", "../../etc/passwd", SECRET])
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(min_size=1, max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
KEYS = [
    ("gateway", "id"),
    ("store", "path"),
    ("store", "max_mb"),
    ("serial", 0, "emulate", "channels"),
    ("serial", 0, "port"),
    ("serial", 0, "baudrate"),
    ("assets", 0, "channels", 0, "rate_hz"),
    ("assets", 0, "channels", 0, "valid_range"),
    ("assets", 0, "channels", 0, "unit"),
    ("assets", 0, "channels", 0, "source", "channel"),
    ("assets", 0, "model", "k"),
    ("features", "window_s"),
    ("features", "bands_hz"),
    ("http", "token"),
    ("http", "token_file"),
    ("http", "max_connections"),
    ("http", "idle_timeout_s"),
    ("sms", "timezone"),
    ("sms", "pin"),
    ("sms", "pin_file"),
    ("models", "public_key_files"),
    ("uplink", "password_file"),
    ("extra",),
]


def put(document: dict[str, Any], key: tuple[str | int, ...], value: Any) -> None:
    place: Any = document
    for part in key[:-1]:
        if isinstance(place, dict) and part not in place:
            place[part] = {}
        place = place[part]
    place[key[-1]] = value


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(KEYS), value=VALUES)
def test_any_value_at_any_key_is_valid_or_refused_naming_the_key(
    work_dir: Path, key: tuple[str | int, ...], value: Any
) -> None:
    document = base_document(work_dir)
    put(document, key, value)
    if key[0] == "uplink":
        document["uplink"].update(broker="mqtts://broker.example.com", username="gw-1")
    secret = None if SECRET in toml_value(value) else SECRET  # as another key's value: shown
    outcome = load(work_dir, toml_document(document).encode(), secret)
    if isinstance(outcome, ConfigError):
        message = str(outcome)
        leaf = next(str(part) for part in reversed(key) if isinstance(part, str))
        assert leaf in message or "not valid TOML" in message, message
        if isinstance(value, str) and len(value) >= 4 and key[-1] in ("token", "pin"):
            assert value not in message


@settings(max_examples=200, deadline=None)
@given(content=st.binary(max_size=300))
def test_any_bytes_are_a_config_or_one_refusal(work_dir: Path, content: bytes) -> None:
    load(work_dir, content)


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(0, 2000), junk=st.binary(max_size=20))
def test_a_cut_or_spliced_config_is_a_config_or_a_refusal(
    work_dir: Path, cut: int, junk: bytes
) -> None:
    text = toml_document(base_document(work_dir)).encode()
    load(work_dir, text[:cut] + junk + text[cut:])
