"""What the emulated MCU measures: a rotating machine's vibration (MachineSignal), and the
faults injected on the way (FaultPlan), both set from name=value strings (parse_faults)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from appliance.rig.mcu.defects import ImpactTrain, impact_train


@dataclass
class MachineSignal:
    """Acceleration (g) of a rotating machine at the sensor; channel c is axis c % 3.

    Channels 3.. are a second sensor further from the bearing (half the vibration). Axis z
    carries gravity. Fault terms: `imbalance_growth_per_s` ramps the 1x amplitude up over
    machine time; `bearing_amplitude_g` adds outer-race defect tones at BPFO and harmonics,
    amplitude-modulated at shaft speed; `outer_race_g`, `inner_race_g` and `ball_g` add defects
    shaped like real ones (strikes ringing a resonance, defects.py); `misalignment_g` a 2x line
    (radial) and 1x (axial, axis z).
    """

    shaft_hz: float = 29.6
    imbalance_g: float = 0.05
    harmonic_g: tuple[float, ...] = (0.02, 0.008)
    noise_g: float = 0.004
    gravity_axis: int = 2
    imbalance_growth_per_s: float = 0.0
    imbalance_max_factor: float = 20.0
    bearing_amplitude_g: float = 0.0
    bpfo_hz: float = 107.0
    bearing_harmonics: int = 3
    outer_race_g: float = 0.0
    inner_race_g: float = 0.0
    ball_g: float = 0.0
    """Bearing defects shaped like real ones (defects.py): strike amplitude in g."""
    resonance_hz: float = 380.0
    """The housing resonance the strikes ring (below the MCU's Nyquist frequency)."""
    slip: float = 0.01
    bpfo_order: float = 3.5848
    bpfi_order: float = 5.4152
    bsf_order: float = 2.357
    ftf_order: float = 0.39828
    """Defect frequencies per shaft revolution (default: the SKF 6205 of examples/gateway.toml)."""
    misalignment_g: float = 0.0
    """Misalignment: a 2x line of this amplitude on the radial axes and 1x on the axial one."""

    def render(
        self, t: npt.NDArray[np.float64], n_channels: int, rng: np.random.Generator
    ) -> npt.NDArray[np.float64]:
        """Samples at machine times `t` (s), shape (len(t), n_channels)."""
        shaft = 2 * np.pi * self.shaft_hz * t
        growth = 1.0 + self.imbalance_growth_per_s * t
        imbalance = self.imbalance_g * np.minimum(growth, self.imbalance_max_factor)
        out = np.empty((len(t), n_channels))
        defects = self._defects(t)
        for channel in range(n_channels):
            axis = channel % 3
            phase = axis * np.pi / 2
            gain = (1.0 if axis < 2 else 0.4) / (1 + channel // 3)
            value = imbalance * np.sin(shaft + phase)
            for order, amplitude in enumerate(self.harmonic_g, start=2):
                value += amplitude * np.sin(order * shaft + 0.7 * order + phase)
            value += self._bearing(t, shaft) + defects
            value += self._misalignment(shaft, axis)
            value = gain * value + rng.normal(0.0, self.noise_g, len(t))
            if axis == self.gravity_axis:
                value += 1.0
            out[:, channel] = value
        return out

    def _defects(self, t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        shaft_hz, ftf_hz = self.shaft_hz, self.ftf_order * self.shaft_hz
        trains = (
            ImpactTrain(
                self.bpfo_order * shaft_hz, self.outer_race_g, self.resonance_hz, slip=self.slip
            ),
            ImpactTrain(
                self.bpfi_order * shaft_hz,
                self.inner_race_g,
                self.resonance_hz,
                slip=self.slip,
                modulation_hz=shaft_hz,
            ),
            ImpactTrain(
                2 * self.bsf_order * shaft_hz,
                self.ball_g,
                self.resonance_hz,
                slip=2 * self.slip,
                modulation_hz=ftf_hz,
            ),
        )
        return sum((impact_train(train, t) for train in trains), np.zeros_like(t))

    def _misalignment(self, shaft: npt.NDArray[np.float64], axis: int) -> npt.NDArray[np.float64]:
        if self.misalignment_g == 0.0:
            return np.zeros_like(shaft)
        if axis == 2:
            return self.misalignment_g * np.sin(shaft + 0.4)
        return self.misalignment_g * np.sin(2 * shaft + 1.1 + axis * np.pi / 2)

    def _bearing(
        self, t: npt.NDArray[np.float64], shaft: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        if self.bearing_amplitude_g == 0.0:
            return np.zeros_like(t)
        envelope = self.bearing_amplitude_g * (1.0 + 0.5 * np.sin(shaft))
        tones = sum(
            np.sin(2 * np.pi * k * self.bpfo_hz * t) / k
            for k in range(1, self.bearing_harmonics + 1)
        )
        return np.asarray(envelope * tones, dtype=np.float64)


@dataclass
class FaultPlan:
    """Random and periodic faults; probabilities are per SAMPLES frame, periods in host seconds."""

    drop_probability: float = 0.0
    garbage_probability: float = 0.0
    garbage_max_bytes: int = 48
    spike_rate_hz: float = 0.0
    spike_amplitude_g: float = 1.5
    unplug_every_s: float = 0.0
    unplug_for_s: float = 1.0
    reset_on_replug: bool = False
    reset_every_s: float = 0.0
    flatline_channel: int | None = None
    flatline_at_s: float = 0.0
    flatline_for_s: float = 15.0
    """Long enough that at least two whole 5 s health windows are flat (a partial one is not
    judged)."""


# name=value strings (CLI --fault, config [serial.emulate] faults) -> (object, field)
FAULT_NAMES: dict[str, tuple[str, str]] = {
    "drop": ("plan", "drop_probability"),
    "garbage": ("plan", "garbage_probability"),
    "garbage_bytes": ("plan", "garbage_max_bytes"),
    "spikes": ("plan", "spike_rate_hz"),
    "spike_g": ("plan", "spike_amplitude_g"),
    "unplug": ("plan", "unplug_every_s"),
    "unplug_for": ("plan", "unplug_for_s"),
    "reset_on_replug": ("plan", "reset_on_replug"),
    "reset": ("plan", "reset_every_s"),
    "flatline": ("plan", "flatline_channel"),
    "flatline_at": ("plan", "flatline_at_s"),
    "flatline_for": ("plan", "flatline_for_s"),
    "shaft_hz": ("signal", "shaft_hz"),
    "imbalance": ("signal", "imbalance_growth_per_s"),
    "bearing": ("signal", "bearing_amplitude_g"),
    "bpfo": ("signal", "bpfo_hz"),
    "outer_race": ("signal", "outer_race_g"),
    "inner_race": ("signal", "inner_race_g"),
    "ball": ("signal", "ball_g"),
    "resonance": ("signal", "resonance_hz"),
    "slip": ("signal", "slip"),
    "bpfo_order": ("signal", "bpfo_order"),
    "bpfi_order": ("signal", "bpfi_order"),
    "bsf_order": ("signal", "bsf_order"),
    "ftf_order": ("signal", "ftf_order"),
    "misalignment": ("signal", "misalignment_g"),
}


def parse_faults(specs: Sequence[str]) -> tuple[FaultPlan, MachineSignal]:
    """Parse ["drop=0.01", "bearing=0.05", ...]; ValueError names the bad entry."""
    plan, signal = FaultPlan(), MachineSignal()
    targets: dict[str, FaultPlan | MachineSignal] = {"plan": plan, "signal": signal}
    for spec in specs:
        name, _, text = spec.partition("=")
        if name not in FAULT_NAMES or not text:
            known = ", ".join(sorted(FAULT_NAMES))
            raise ValueError(f"bad fault {spec!r}: expected name=value, names: {known}")
        target_name, attribute = FAULT_NAMES[name]
        target = targets[target_name]
        current = getattr(target, attribute)
        setattr(target, attribute, _convert(text, current, spec))
    return plan, signal


def _convert(text: str, current: object, spec: str) -> object:
    try:
        if isinstance(current, bool):
            return text.lower() in ("1", "true", "yes")
        if isinstance(current, int) or current is None:
            return int(text)
        return float(text)
    except ValueError as error:
        raise ValueError(f"bad fault value in {spec!r}: {error}") from error
