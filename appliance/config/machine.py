"""An asset's [assets.machine] table: what the vibration diagnosis needs to know about the machine.

Shaft speed (the asset's fixed `speed_rpm`, or a range it is estimated in), its rolling bearings
(geometry, or the catalogue's defect frequencies as orders of shaft speed), the ISO 20816-3
machine group and foundation that set the velocity zones, and how each vibration channel's sensor
is mounted. docs/DIAGNOSIS.md describes how the diagnosis uses each field.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from appliance.config.capture import ChannelConfig
from appliance.config.fields import Name, PositiveFloat, Strict, refuse_duplicates

ACCELERATION_UNITS_IN_G = {"g": 1.0, "m/s2": 1.0 / 9.80665, "m/s^2": 1.0 / 9.80665}
"""The units a diagnosed channel may be in, with the factor that turns a value into g."""

Orientation = Literal["horizontal", "vertical", "axial"]


class BearingGeometry(Strict):
    """A rolling bearing's dimensions (the maker's data sheet)."""

    rolling_elements: Annotated[int, Field(ge=3, le=200)]
    """Number of balls or rollers in one row."""
    ball_diameter_mm: PositiveFloat
    """Diameter of one ball or roller."""
    pitch_diameter_mm: PositiveFloat
    """Diameter of the circle through the balls' centres (about the mean of bore and outside)."""
    contact_angle_deg: Annotated[float, Field(ge=0, lt=90)] = 0.0
    """0 for a deep-groove ball bearing; 15-40 for angular-contact and taper bearings."""

    @model_validator(mode="after")
    def _ball_fits(self) -> BearingGeometry:
        if self.ball_diameter_mm >= self.pitch_diameter_mm:
            raise ValueError(
                f"ball_diameter_mm ({self.ball_diameter_mm}) must be smaller than "
                f"pitch_diameter_mm ({self.pitch_diameter_mm})"
            )
        return self


class DefectOrders(Strict):
    """Catalogue defect frequencies as multiples of shaft speed (e.g. SKF's bearing calculator)."""

    bpfi: PositiveFloat
    """Ball pass frequency, inner race."""
    bpfo: PositiveFloat
    """Ball pass frequency, outer race."""
    bsf: PositiveFloat
    """Ball (roller) spin frequency."""
    ftf: Annotated[float, Field(gt=0, lt=1)]
    """Fundamental train (cage) frequency: below shaft speed."""


class BearingConfig(Strict):
    """One rolling bearing: either `geometry` or `orders`, not both."""

    name: Name
    """Names the bearing in the diagnosis's evidence (e.g. "drive-end")."""
    geometry: BearingGeometry | None = None
    """Dimensions: the defect frequencies are computed from them (appliance/diagnosis)."""
    orders: DefectOrders | None = None
    """The maker's defect frequencies per shaft revolution, used as given."""

    @model_validator(mode="after")
    def _one_description(self) -> BearingConfig:
        if (self.geometry is None) == (self.orders is None):
            raise ValueError(
                f"bearing {self.name!r}: give either geometry (rolling_elements, ...) or "
                "orders (bpfi, bpfo, bsf, ftf), exactly one"
            )
        return self


class MachineConfig(Strict):
    """The [assets.machine] table: without it the asset gets no diagnosis, only detection."""

    speed_range_rpm: Annotated[list[PositiveFloat], Field(min_length=2, max_length=2)] | None = None
    """[min, max]: the shaft speed is estimated from each window's spectrum within this range.
    Needed when the asset has no fixed `speed_rpm`; with both, the fixed speed is used."""
    group: Literal[1, 2] = 2
    """ISO 20816-3 machine group: 1 large (above 300 kW, or shaft height 315 mm and more),
    2 medium (15-300 kW, shaft height 160-315 mm)."""
    foundation: Literal["rigid", "flexible"] = "rigid"
    """ISO 20816-3: rigid when the machine-on-foundation's lowest natural frequency is at least
    25 % above its running speed, flexible otherwise."""
    bearings: list[BearingConfig] = []
    """The rolling bearings whose defect frequencies are looked for (none: shaft patterns only)."""
    diagnose_every_s: Annotated[float, Field(ge=1, le=86400)] = 60.0
    """How often the diagnosis runs while the asset is quiet; every window while its detector
    flags windows or an alarm or a sensor rule is up on it."""
    orientation: dict[Name, Orientation] = {}
    """Vibration channel name -> how its sensor is mounted (horizontal, vertical, axial).
    Only the channels named here are diagnosed; none named: every vibration channel, as radial."""

    @model_validator(mode="after")
    def _check(self) -> MachineConfig:
        if self.speed_range_rpm is not None:
            low, high = self.speed_range_rpm
            if low >= high:
                raise ValueError(f"speed_range_rpm: min {low} must be below max {high}")
        refuse_duplicates("bearings", [bearing.name for bearing in self.bearings])
        return self


def check_machine(
    machine: MachineConfig, channels: list[ChannelConfig], speed_rpm: float | None
) -> None:
    """ValueError naming the field if the machine table does not fit the asset's channels."""
    if speed_rpm is None and machine.speed_range_rpm is None:
        raise ValueError(
            "machine: needs the shaft speed: speed_rpm (fixed) or machine.speed_range_rpm "
            "(estimated within it)"
        )
    by_name = {channel.name: channel for channel in channels}
    if len(by_name) < len(channels):
        return  # the config's own check names the duplicate channel, the clearer error
    for name in machine.orientation:
        channel = by_name.get(name)
        if channel is None:
            raise ValueError(f"machine.orientation.{name}: the asset has no channel {name!r}")
        if not channel.is_vibration:
            raise ValueError(
                f"machine.orientation.{name}: {channel.kind} is not a vibration channel"
            )
    for channel in diagnosed_channels(machine, channels):
        if channel.unit not in ACCELERATION_UNITS_IN_G:
            units = ", ".join(ACCELERATION_UNITS_IN_G)
            raise ValueError(
                f"machine: channel {channel.name!r} is in {channel.unit!r}; the diagnosis needs "
                f"acceleration in one of {units}"
            )


def diagnosed_channels(
    machine: MachineConfig, channels: list[ChannelConfig]
) -> list[ChannelConfig]:
    """The channels named in `orientation`, or every vibration channel when none is named."""
    if machine.orientation:
        return [channel for channel in channels if channel.name in machine.orientation]
    return [channel for channel in channels if channel.is_vibration]
