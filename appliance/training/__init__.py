"""Workstation-only model training (TensorFlow from the optional `train` extra, imported lazily).

The gateway never imports this package's TensorFlow code; `dense` is plain numpy.
"""
