"""Bearing defects as a real bearing shows them: impacts at the defect rate ringing a resonance.

Each time a rolling element meets the defect it strikes; the strike rings a structural resonance
of the housing (a damped sine at `resonance_hz`), and the accelerometer sees the train of rings
(Randall and Antoni, MSSP 25 (2011), section 2). The strikes do not come exactly on time: the
elements slip 1-2 %, modelled as a deterministic jitter of each strike (so that any chunk of
machine time renders the same, however the MCU cuts it). How hard each strike is depends on the
load it carries:

- outer race: the defect sits still in the load zone, every strike alike;
- inner race: the defect turns with the shaft through the load zone, so the strikes are
  modulated at shaft speed (sidebands at +-1x around BPFI in the envelope spectrum);
- rolling element: the ball strikes both races once per spin (2 x BSF) and goes round with the
  cage through the load zone (modulation at FTF).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
GOLDEN = (math.sqrt(5) - 1) / 2


@dataclass(frozen=True)
class ImpactTrain:
    rate_hz: float
    """Strikes per second."""
    amplitude_g: float
    resonance_hz: float
    damping: float = 0.05
    """Damping ratio of the ringing resonance."""
    slip: float = 0.01
    """Largest jitter of a strike, as a share of the period."""
    modulation_hz: float = 0.0
    """Load-zone modulation of the strikes (0: none)."""
    modulation_depth: float = 0.8


def impact_train(train: ImpactTrain, t: FloatArray) -> FloatArray:
    """The rings of every strike that still sounds at the (increasing, evenly spaced) times t."""
    if train.amplitude_g == 0.0 or len(t) == 0:
        return np.zeros_like(t)
    period = 1.0 / train.rate_hz
    decay = train.damping * 2 * np.pi * train.resonance_hz
    ring_s = 7.0 / decay  # the ring has fallen below 0.1 % by then
    count = math.ceil(ring_s / period) + 1
    latest = np.floor(t / period).astype(np.int64)
    out = np.zeros_like(t)
    for back in range(-1, count):  # -1: the next strike, if its jitter brings it before t
        strike = latest - back
        at = (strike + train.slip * (2 * np.mod(strike * GOLDEN, 1.0) - 1)) * period
        since = t - at
        sounding = (since >= 0) & (since < ring_s)
        gain = 1.0 + train.modulation_depth * np.cos(2 * np.pi * train.modulation_hz * at)
        ring = np.exp(-decay * since) * np.sin(2 * np.pi * train.resonance_hz * since)
        out += np.where(sounding, train.amplitude_g * gain * ring, 0.0)
    return out
