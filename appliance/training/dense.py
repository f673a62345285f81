"""A trained autoencoder's float weights run in numpy: the float reference for the int8 model.

Used on the workstation to compare the int8 model with its float original (same data, same
scorer) and as the bench baseline. Not shipped in bundles.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

F32 = NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class DenseLayer:
    weights: F32
    """(inputs, outputs)"""
    bias: F32
    relu: bool


@dataclass(frozen=True, slots=True)
class DenseNetwork:
    layers: tuple[DenseLayer, ...]

    @property
    def n_features(self) -> int:
        return int(self.layers[0].weights.shape[0])

    def forward(self, rows: F32) -> F32:
        values = np.asarray(rows, dtype=np.float32)
        for layer in self.layers:
            values = values @ layer.weights + layer.bias
            if layer.relu:
                values = np.maximum(values, np.float32(0.0))
        return values


class FloatReconstructor:
    """A `Reconstructor` over the float network (backend "float-numpy")."""

    def __init__(self, network: DenseNetwork) -> None:
        self.backend = "float-numpy"
        self.n_features = network.n_features
        self.last_invoke_s = 0.0
        self._network = network

    def reconstruct(self, scaled: F32) -> F32:
        started = time.perf_counter()
        rows = np.asarray(scaled, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.n_features:
            raise ValueError(f"scaled: expected shape (n, {self.n_features}), got {rows.shape}")
        reconstruction = self._network.forward(rows)
        self.last_invoke_s = time.perf_counter() - started
        return reconstruction
