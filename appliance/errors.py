"""One exception root for the appliance; boundaries turn OS/library errors into these."""


class ApplianceError(Exception):
    """Root of every error the appliance raises on purpose."""


class ConfigError(ApplianceError):
    """The configuration is invalid; the message names the offending key."""


class DeviceError(ApplianceError):
    """A device (serial port, I2C bus, sensor) failed or vanished."""


class StoreError(ApplianceError):
    """The local store failed (disk full, corrupt database, migration error)."""


class BundleError(ApplianceError):
    """A model bundle is unusable (bad manifest, hash, signature, shape); the message says why."""
