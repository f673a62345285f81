"""The diagnosis's inputs from an asset's [assets.machine] table."""

from __future__ import annotations

from appliance.config.machine import ACCELERATION_UNITS_IN_G, MachineConfig
from appliance.diagnosis.bearing import DefectOrders, orders_from_geometry
from appliance.diagnosis.verdict import MachineSeverity


def bearing_orders(machine: MachineConfig) -> dict[str, DefectOrders]:
    """Each configured bearing's defect orders, from its catalogue orders or its geometry."""
    orders: dict[str, DefectOrders] = {}
    for bearing in machine.bearings:
        if bearing.orders is not None:
            given = bearing.orders
            orders[bearing.name] = DefectOrders(given.bpfi, given.bpfo, given.bsf, given.ftf)
        elif bearing.geometry is not None:
            shape = bearing.geometry
            orders[bearing.name] = orders_from_geometry(
                shape.rolling_elements,
                shape.ball_diameter_mm,
                shape.pitch_diameter_mm,
                shape.contact_angle_deg,
            )
    return orders


def machine_severity(machine: MachineConfig) -> MachineSeverity:
    return MachineSeverity(machine.group, machine.foundation)


def to_g(unit: str) -> float:
    """Factor from a channel's unit to g (the config refuses any other unit)."""
    return ACCELERATION_UNITS_IN_G[unit]
