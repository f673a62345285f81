"""Synthetic feature rows with known structure, for tests, benches and demos of training.

Normal rows: `n_features` features driven by `n_factors` latent factors through a fixed random
mixing, plus small independent noise, each feature with its own offset and unit. An autoencoder
with a bottleneck of about `n_factors` learns them well; rows that break the correlations, or
follow them far beyond the trained range, are anomalies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from appliance.records import FloatArray

T0_UTC = 1_767_225_600.0
"""2026-01-01T00:00:00Z: start of the synthetic window times."""


@dataclass(frozen=True, slots=True)
class LatentFactorSource:
    """Draws rows from one fixed latent-factor structure."""

    mixing: FloatArray
    """(n_factors, n_features)"""
    offset: FloatArray
    unit: FloatArray
    noise: float

    @classmethod
    def create(
        cls, seed: int, n_features: int = 12, n_factors: int = 3, noise: float = 0.1
    ) -> LatentFactorSource:
        rng = np.random.default_rng(seed)
        return cls(
            mixing=rng.normal(size=(n_factors, n_features)),
            offset=rng.uniform(-50.0, 50.0, size=n_features),
            unit=10.0 ** rng.uniform(-2.0, 2.0, size=n_features),
            noise=noise,
        )

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f"feature_{i:02d}" for i in range(self.mixing.shape[1]))

    def normal_rows(self, rng: np.random.Generator, n: int) -> FloatArray:
        """Rows that follow the structure (standard normal latent factors)."""
        return self._rows(rng, rng.normal(size=(n, self.mixing.shape[0])))

    def extreme_rows(
        self, rng: np.random.Generator, n: int, factor_norm: float = 8.0
    ) -> FloatArray:
        """Rows that keep the correlations but lie far beyond the normal range.

        The latent factors have length `factor_norm` (normal rows: about sqrt(n_factors)).
        """
        directions = rng.normal(size=(n, self.mixing.shape[0]))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        return self._rows(rng, factor_norm * directions)

    def broken_rows(self, rng: np.random.Generator, n: int, shift: float = 4.0) -> FloatArray:
        """Normal rows with two features each moved by `shift` of their typical spread."""
        rows = self.normal_rows(rng, n)
        spread = self.unit * np.sqrt((self.mixing**2).sum(axis=0) + self.noise**2)
        for row in rows:
            broken = rng.choice(len(spread), size=2, replace=False)
            row[broken] += rng.choice([-shift, shift], size=2) * spread[broken]
        return rows

    def _rows(self, rng: np.random.Generator, factors: FloatArray) -> FloatArray:
        noise = rng.normal(scale=self.noise, size=(len(factors), self.mixing.shape[1]))
        rows: FloatArray = self.offset + self.unit * (factors @ self.mixing + noise)
        return rows


def window_times(n: int, stride_s: float = 1.0) -> FloatArray:
    return T0_UTC + stride_s * np.arange(n, dtype=np.float64)
