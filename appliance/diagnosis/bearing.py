"""Bearing defect frequencies as orders of shaft speed (multiples of the shaft's rotation rate).

The kinematic formulas for a rolling bearing with a stationary outer race (e.g. Randall and
Antoni, "Rolling element bearing diagnostics - a tutorial", MSSP 25 (2011), eq. 1-4), with
n rolling elements of diameter d on a pitch circle D at contact angle a, r = d / D cos a:

    FTF  = (1 - r) / 2            cage (fundamental train)
    BPFO = n (1 - r) / 2          ball pass, outer race
    BPFI = n (1 + r) / 2          ball pass, inner race
    BSF  = D / (2 d) (1 - r^2)    ball spin (a ball defect strikes both races: 2 x BSF)

Real bearings slip 1-2 %, so matched lines are searched within a tolerance (lines.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class DefectOrders:
    """Defect frequencies per shaft revolution."""

    bpfi: float
    bpfo: float
    bsf: float
    ftf: float

    def hz(self, shaft_hz: float) -> DefectOrders:
        """The same frequencies in Hz at a shaft speed in Hz."""
        return DefectOrders(
            self.bpfi * shaft_hz, self.bpfo * shaft_hz, self.bsf * shaft_hz, self.ftf * shaft_hz
        )


CWRU_DRIVE_END = DefectOrders(bpfi=5.4152, bpfo=3.5848, bsf=2.357, ftf=0.39828)
"""SKF 6205-2RS JEM, the CWRU test rig's drive-end bearing (the data set's own table)."""


def orders_from_geometry(
    rolling_elements: int,
    ball_diameter: float,
    pitch_diameter: float,
    contact_angle_deg: float = 0.0,
) -> DefectOrders:
    """Defect orders from the bearing's dimensions (any one length unit for both diameters)."""
    if rolling_elements < 1 or not 0 < ball_diameter < pitch_diameter:
        raise ValueError(
            f"need rolling_elements >= 1 and 0 < ball ({ball_diameter}) < pitch ({pitch_diameter})"
        )
    ratio = ball_diameter / pitch_diameter * math.cos(math.radians(contact_angle_deg))
    return DefectOrders(
        bpfi=rolling_elements * (1 + ratio) / 2,
        bpfo=rolling_elements * (1 - ratio) / 2,
        bsf=pitch_diameter / (2 * ball_diameter) * (1 - ratio * ratio),
        ftf=(1 - ratio) / 2,
    )
