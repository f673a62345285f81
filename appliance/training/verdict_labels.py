"""Which windows `appliance train` learns normal from, given what operators said of the anomaly
episodes: a window of an episode confirmed a real fault is never trained on (not even with
--keep-anomalous), and a window of an episode confirmed not a fault is trained on as normal,
however the gateway scored it. The labels come from appliance/uplink/schema/verdicts.py."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class NormalWindows:
    kept: BoolArray
    skipped: dict[str, int]
    notes: tuple[str, ...]


def normal_windows(
    anomalous: BoolArray, labels: npt.NDArray[np.str_], keep_anomalous: bool
) -> NormalWindows:
    """Among usable windows (finite, in the span) with their gateway's anomalous flags and
    their verdict labels: those to train on, the counts left out by reason, and notes."""
    real = labels == "real_fault"
    false_alarm = labels == "not_a_fault"
    kept = ~real & (false_alarm | ~anomalous | keep_anomalous)
    skipped = {"in anomalies confirmed a real fault": int(real.sum())} if real.any() else {}
    notes = []
    if keep_anomalous:
        notes.append("windows the gateway scored anomalous were kept (--keep-anomalous)")
    else:
        skipped["scored anomalous by the gateway"] = int((anomalous & ~real & ~false_alarm).sum())
    relabelled = int((anomalous & false_alarm).sum())
    if relabelled:
        notes.append(
            f"{relabelled} windows scored anomalous kept as normal: operators said their "
            "anomalies were not a fault"
        )
    return NormalWindows(kept, skipped, tuple(notes))
