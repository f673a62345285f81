"""What-if for bench/cv_skab.py: a per-feature standardised reconstruction error.

Each feature's squared residual is divided by that feature's mean squared residual over the
learnt rows (so every feature counts in units of its own training error), optionally capped at
`cap` of those units, and the features are combined by their mean, their max or the mean of the
largest two. Grid keys: `error=mean|max|top2|raw` (raw: today's error, recomputed through the
cached int8 model, a check that the what-if path gives the cached replay's figures) and `cap`
(0: none). The scorer has none of this; it is replayed through the same threshold and alarm code.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from sweep_skab import FileErrors, Setting

COMBINES = ("raw", "mean", "max", "top2")


@dataclass(frozen=True)
class Standard:
    """How the per-feature squared residuals become one error."""

    combine: str
    cap: float = 0.0

    @classmethod
    def of(cls, setting: Setting) -> Standard | None:
        values = dict(item.split("=", 1) for item in setting.name.split())
        if "error" not in values:
            return None
        if values["error"] not in COMBINES:
            raise ValueError(f"error={values['error']}: one of {COMBINES}")
        return cls(values["error"], float(values.get("cap", 0)))

    def errors(self, per_feature: np.ndarray, train_rows: int) -> np.ndarray:
        """(rows,) errors from (rows, features) squared residuals; the scale from the first
        `train_rows` rows (the learnt ones)."""
        if self.combine == "raw":
            combined: np.ndarray = per_feature.sum(axis=1) / per_feature.shape[1]
            return combined
        scale = per_feature[:train_rows].mean(axis=0)
        units = per_feature / np.where(scale > 0, scale, 1.0)
        if self.cap > 0:
            units = np.minimum(units, self.cap)
        if self.combine == "mean":
            combined = units.mean(axis=1)
        elif self.combine == "max":
            combined = units.max(axis=1)
        else:
            combined = np.sort(units, axis=1)[:, -2:].mean(axis=1)
        return combined


def with_standard(data: FileErrors, per_feature: np.ndarray, standard: Standard) -> FileErrors:
    """The file's int8 errors replaced by the standardised error of its per-feature residuals
    (every row of the file, learnt rows first)."""
    rows = len(data.train["int8"])
    errors = standard.errors(per_feature, rows)
    train = dict(data.train) | {"int8": errors[:rows]}
    return replace(data, train=train, test=dict(data.test) | {"int8": errors[rows:]})
