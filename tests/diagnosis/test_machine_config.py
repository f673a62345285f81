"""[assets.machine]: the example is valid, and each bad field is refused by name."""

import copy
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from appliance.config import load_config, parse_config
from appliance.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gateway.toml"

Document = dict[str, Any]


def machine(d: Document) -> Document:
    table: Document = d["assets"][0]["machine"]
    return table


def refusal(change: Callable[[Document], object]) -> str:
    document = tomllib.loads(EXAMPLE.read_text())
    change(document)
    with pytest.raises(ConfigError) as caught:
        parse_config(copy.deepcopy(document), "site.toml")
    return str(caught.value)


def test_the_example_documents_every_machine_field() -> None:
    pump = load_config(EXAMPLE).asset("pump-1")
    assert pump.machine is not None
    assert [bearing.name for bearing in pump.machine.bearings] == ["drive-end", "non-drive-end"]
    geometry = pump.machine.bearings[0].geometry
    assert geometry is not None and geometry.rolling_elements == 9
    orders = pump.machine.bearings[1].orders
    assert orders is not None and orders.bpfo == 3.5848
    assert pump.machine.orientation["accel_z"] == "axial"
    text = EXAMPLE.read_text()
    for key in ("speed_range_rpm", "group", "foundation", "contact_angle_deg", "ftf"):
        assert key in text


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: machine(d)["bearings"][0]["geometry"].update(ball_diameter_mm=50.0),
            "ball_diameter_mm (50.0) must be smaller than pitch_diameter_mm",
        ),
        (
            lambda d: machine(d)["bearings"][0].update(orders={"bpfi": 5, "bpfo": 3.0}),
            "assets[0].machine.bearings[0]",
        ),
        (
            lambda d: machine(d)["bearings"][1].pop("orders"),
            "bearing 'non-drive-end': give either geometry",
        ),
        (
            lambda d: machine(d)["bearings"][1]["orders"].update(ftf=1.2),
            "assets[0].machine.bearings[1].orders.ftf",
        ),
        (lambda d: machine(d).update(group=3), "assets[0].machine.group"),
        (lambda d: machine(d).update(foundation="soft"), "assets[0].machine.foundation"),
        (lambda d: machine(d).update(speed_range_rpm=[1600.0, 1400.0]), "speed_range_rpm: min"),
        (
            lambda d: d["assets"][0].pop("speed_rpm"),
            "needs the shaft speed: speed_rpm (fixed) or machine.speed_range_rpm",
        ),
        (
            lambda d: machine(d)["orientation"].update(accel_w="axial"),
            "machine.orientation.accel_w: the asset has no channel 'accel_w'",
        ),
        (
            lambda d: machine(d)["orientation"].update(bearing_temp="axial"),
            "machine.orientation.bearing_temp: temperature is not a vibration channel",
        ),
        (
            lambda d: d["assets"][0]["channels"][0].update(unit="mm/s"),
            "channel 'accel_x' is in 'mm/s'; the diagnosis needs acceleration",
        ),
        (lambda d: machine(d)["orientation"].update(accel_x="diagonal"), "orientation.accel_x"),
        (
            lambda d: machine(d)["bearings"][1].update(name="drive-end"),
            "bearings: duplicate name(s) 'drive-end'",
        ),
    ],
)
def test_a_bad_machine_field_is_refused_by_name(
    change: Callable[[Document], object], expected: str
) -> None:
    assert expected in refusal(change)


def test_a_speed_range_stands_in_for_a_fixed_speed() -> None:
    document = tomllib.loads(EXAMPLE.read_text())
    del document["assets"][0]["speed_rpm"]
    machine(document)["speed_range_rpm"] = [1400.0, 1550.0]
    asset = parse_config(document, "site.toml").asset("pump-1")
    assert asset.machine is not None and asset.machine.speed_range_rpm == [1400.0, 1550.0]


def test_the_example_bearings_give_the_diagnosis_the_same_orders_either_way() -> None:
    from appliance.diagnosis.from_config import bearing_orders, machine_severity, to_g

    pump = load_config(EXAMPLE).asset("pump-1")
    assert pump.machine is not None
    orders = bearing_orders(pump.machine)
    by_geometry, by_catalogue = orders["drive-end"], orders["non-drive-end"]
    assert by_geometry.bpfo == pytest.approx(by_catalogue.bpfo, rel=1e-3)
    assert by_geometry.bpfi == pytest.approx(by_catalogue.bpfi, rel=1e-3)
    assert machine_severity(pump.machine).group == 2
    assert to_g("g") == 1.0 and to_g("m/s2") == pytest.approx(1 / 9.80665)
