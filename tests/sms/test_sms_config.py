"""The [sms] config table: bad values refused with a clear message, the example valid, the
shipped udev rule keeps ModemManager off the modem and the MCU."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from appliance.cli import main
from appliance.config import parse_config
from appliance.errors import ConfigError
from appliance.rig.demo import demo_config
from appliance.sms.settings import sms_settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "gateway.toml"
UDEV_RULES = ROOT / "image" / "udev" / "75-appliance-serial.rules"
GOOD = {"port": "/dev/serial/by-id/usb-SimTech_SIM7600-if02-port0", "recipients": ["+491701234567"]}


def with_sms(tmp_path: Path, **sms: Any) -> dict[str, Any]:
    document = demo_config(tmp_path, [], sms=False).model_dump(exclude_none=True)
    document["sms"] = sms
    return document


def problems(tmp_path: Path, **sms: Any) -> str:
    with pytest.raises(ConfigError) as refused:
        parse_config(with_sms(tmp_path, **sms))
    return str(refused.value)


@pytest.mark.parametrize(
    ("sms", "says"),
    [
        ({"recipients": ["+491701234567"]}, "give the modem's port, or emulate = true"),
        ({**GOOD, "emulate": True}, "not both"),
        ({**GOOD, "port": "/dev/ttyUSB2"}, "/dev/serial/by-id/"),
        ({**GOOD, "port": "modem"}, "absolute device path"),
        ({**GOOD, "recipients": ["0170 1234567"]}, "recipients[0]: must be an international"),
        ({**GOOD, "recipients": []}, "recipients: List should have at least 1 item"),
        ({**GOOD, "recipients": ["+491701234567"] * 2}, "duplicate name(s) '+491701234567'"),
        ({**GOOD, "pin": "12"}, "sms.pin: a SIM PIN is 4 to 8 digits"),
        ({**GOOD, "pin": "1234", "pin_file": "/etc/pin"}, "give pin or pin_file, not both"),
        ({**GOOD, "severities": ["fatal"]}, "severities[0]: Input should be 'warning' or"),
        ({**GOOD, "kinds": ["anomalies"]}, "kinds[0]: Input should be 'anomaly'"),
        ({**GOOD, "max_per_hour": 10, "max_per_day": 5}, "max_per_hour (10) exceeds"),
        ({**GOOD, "retry_initial_s": 600, "retry_max_s": 60}, "retry_max_s (60.0) is below"),
        ({**GOOD, "give_up_after_s": 60, "retry_initial_s": 60}, "leaves no room for a retry"),
        ({**GOOD, "timezone": "Europe/Bonn"}, "sms.timezone: unknown time zone"),
        ({**GOOD, "max_copies": 0}, "sms.max_copies: Input should be greater than or equal to 1"),
        ({**GOOD, "max_copies": "2"}, "sms.max_copies: Input should be a valid integer"),
        ({**GOOD, "power_cycle_gpio": -1}, "power_cycle_gpio: Input should be greater"),
        ({**GOOD, "power_cycle_gpio_chip": "/dev/gpiochip0"}, "power_cycle_gpio_chip"),
        ({"emulate": True, **{"recipients": GOOD["recipients"]}, "power_cycle_gpio": 4}, "real"),
        ({**GOOD, "sender": "+49"}, "sms.sender: unknown key"),
    ],
)
def test_bad_values_are_refused_clearly(tmp_path: Path, sms: dict[str, Any], says: str) -> None:
    assert says in problems(tmp_path, **sms)


def test_max_copies_reaches_the_sender_with_a_small_default(tmp_path: Path) -> None:
    default = parse_config(with_sms(tmp_path, **GOOD)).sms
    chosen = parse_config(with_sms(tmp_path, **GOOD, max_copies=1)).sms
    assert default is not None and chosen is not None
    assert sms_settings("gw", default).sender.max_copies == 2
    assert sms_settings("gw", chosen).sender.max_copies == 1


def test_a_bad_pin_is_never_repeated_in_the_error(tmp_path: Path) -> None:
    assert "12x45" not in problems(tmp_path, **{**GOOD, "pin": "12x45"})


def test_the_commented_example_is_valid_once_uncommented_and_shows_every_key() -> None:
    text = EXAMPLE.read_text()
    start = text.index("# [sms]")
    end = text.index("\n\n", start)
    block = text[start:end].splitlines()
    uncommented = "\n".join(re.sub(r"^# ?", "", line) for line in block if line.startswith("# "))
    document = tomllib.loads(text) | tomllib.loads(uncommented)
    config = parse_config(document, "gateway.toml")
    assert config.sms is not None and config.sms.port == "/dev/appliance/modem"
    shown = config.sms.model_fields_set | {"pin"}  # named in pin_file's comment
    assert shown == set(type(config.sms).model_fields), "the example shows every key"


def test_check_config_reads_the_pin_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gateway.toml"
    pin_file = tmp_path / "sim-pin"
    config.write_text(
        EXAMPLE.read_text()
        + f'\n[sms]\nport = "/dev/appliance/modem"\npin_file = "{pin_file}"\n'
        + 'recipients = ["+491701234567"]\n'
    )
    assert main(["check-config", str(config)]) == 2
    assert "sms.pin_file: cannot read" in capsys.readouterr().err
    pin_file.write_text("4711\n")
    assert main(["check-config", str(config)]) == 0
    assert "SMS of critical alerts to 1 recipient(s) through /dev/appliance/modem" in (
        capsys.readouterr().out
    )


def test_the_udev_rule_names_the_modem_and_keeps_modemmanager_away() -> None:
    rules = [
        line
        for line in UDEV_RULES.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for line in rules:  # every rule is key op "value" pairs separated by commas
        for pair in line.split(", "):
            assert re.fullmatch(r'[A-Z_]+(\{[A-Za-z_.]+\})?(==|!=|=|\+=)"[^"]*"', pair), pair

    def ignored(vendor: str, product: str) -> bool:
        return any(
            f'ATTRS{{idVendor}}=="{vendor}"' in line
            and re.search(rf'ATTRS\{{idProduct\}}=="[^"]*{product}', line)
            and 'ENV{ID_MM_DEVICE_IGNORE}="1"' in line
            for line in rules
        )

    for vendor, product in [("1e0e", "9001"), ("10c4", "ea60"), ("1a86", "7523"), ("2e8a", "000a")]:
        assert ignored(vendor, product), f"{vendor}:{product} not hidden from ModemManager"
    modem = [line for line in rules if 'SYMLINK+="appliance/modem"' in line]
    assert any('ATTRS{idProduct}=="9001"' in r and '=="02"' in r for r in modem)
