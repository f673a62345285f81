"""Edge anomaly appliance: capture -> features -> detect -> store -> uplink."""

__version__ = "0.1.0"
