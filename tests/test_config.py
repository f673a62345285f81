import copy
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from appliance.cli import main
from appliance.config import ModelConfig, load_config, parse_config
from appliance.detect.assets import detector_settings
from appliance.detect.scorer import DetectorSettings
from appliance.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "gateway.toml"

Document = dict[str, Any]


@pytest.fixture
def document() -> Document:
    return tomllib.loads(EXAMPLE.read_text())


def refusal(document: Document, change: Callable[[Document], object]) -> str:
    changed = copy.deepcopy(document)
    change(changed)
    with pytest.raises(ConfigError) as caught:
        parse_config(changed, "site.toml")
    return str(caught.value)


def test_example_config_is_valid_and_complete() -> None:
    config = load_config(EXAMPLE)
    pump = config.asset("pump-1")
    assert [c.name for c in pump.channels] == [
        "accel_x",
        "accel_y",
        "accel_z",
        "bearing_temp",
        "motor_current",
    ]
    assert config.serial[0].port.startswith("/dev/serial/by-id/")
    assert config.features.nperseg == 256


def first_channel(d: Document) -> Document:
    channel: Document = d["assets"][0]["channels"][0]
    return channel


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: first_channel(d).update(rate_hz=0), "assets[0].channels[0].rate_hz"),
        (lambda d: first_channel(d).update(rte_hz=5), "assets[0].channels[0].rte_hz: unknown key"),
        (lambda d: d["store"].update(pth="x"), "store.pth: unknown key"),
        (lambda d: d.update(extra_table={}), "extra_table: unknown key"),
        (lambda d: first_channel(d).update(rate_hz="1000"), "rate_hz: Input should be a valid"),
        (lambda d: d["features"].update(nperseg=256.5), "features.nperseg"),
        (
            lambda d: d["assets"][0]["channels"][1].update(name="accel_x"),
            "assets[0].channels: duplicate name(s) 'accel_x'",
        ),
        (lambda d: d["features"].update(window_s=0.2, stride_s=0.1), "features.window_s"),
        (lambda d: d["features"].update(noverlap=256), "noverlap (256) must be smaller"),
        (lambda d: d["features"].update(stride_s=10.0), "stride_s (10.0) must not exceed"),
        (lambda d: first_channel(d).update(valid_range=[2.0, -2.0]), "valid_range"),
        (
            lambda d: first_channel(d)["source"].update(serial="nope"),
            "assets[0].channels[0].source.serial: no [[serial]] device named 'nope'",
        ),
        (
            lambda d: first_channel(d).update(source={"device": 1}),
            "source needs either a 'serial' key",
        ),
        (
            lambda d: d["assets"][0]["channels"][3]["source"].update(quantity="current"),
            "quantity 'current' is not measured by tmp117",
        ),
        (lambda d: d["i2c"][0].update(bus=-1), "i2c[0].bus"),
        (lambda d: d["store"].update(synchronous="OFF"), "store.synchronous"),
        (
            lambda d: d["assets"][0]["channels"][1]["source"].update(channel=0),
            "duplicate name(s) 'mcu0:0'",
        ),
        (lambda d: d.pop("gateway"), "gateway: Field required"),
        (
            lambda d: d["assets"][0]["model"].update(clear_after_windows=0),
            "assets[0].model.clear_after_windows",
        ),
        (
            lambda d: d["assets"][0]["channels"][3].update(kind="vibration"),
            "vibration channel must come from a serial",
        ),
    ],
)
def test_bad_values_are_refused_naming_the_key(
    document: Document, change: Callable[[Document], object], expected: str
) -> None:
    message = refusal(document, change)
    assert expected in message
    assert message.startswith("site.toml:")


def test_window_shorter_than_segment_names_both_keys(document: Document) -> None:
    message = refusal(document, lambda d: d["features"].update(window_s=0.2, stride_s=0.1))
    assert "features.window_s" in message and "features.nperseg = 256" in message


def test_unreadable_and_malformed_files_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.toml: cannot read config"):
        load_config(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[gateway\nid = 1\n")
    with pytest.raises(ConfigError, match=r"broken\.toml: not valid TOML"):
        load_config(broken)


def test_check_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(EXAMPLE)]) == 0
    assert "OK" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text(EXAMPLE.read_text().replace('rate_hz = 1000\n  unit = "g"', "rate_hz = 0\n", 1))
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.toml" in err and "assets[0].channels[0].rate_hz" in err


def test_the_alarm_hold_comes_from_the_asset_model_table(document: Document) -> None:
    document["assets"][0]["model"]["clear_after_windows"] = 4
    config = parse_config(document, "site.toml")

    held = detector_settings(config.assets[0].model)
    default = detector_settings(ModelConfig())

    assert held.alarm.off_count == 4
    assert default.alarm == DetectorSettings().alarm
