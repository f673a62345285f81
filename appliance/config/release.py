"""The [release] table: over-the-air updates of the appliance's own code (docs/IMAGE.md
"Appliance updates over the air")."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from appliance.config.fields import PathText, Strict


class ReleaseConfig(Strict):
    """Signed release bundles (the appliance wheel and the pinned wheels that changed) arrive
    through the inbox directory, the uplink's MQTT command topic or the status page, are
    installed beside the running release under `root`, switched to, and kept only if the new
    release passes its health check."""

    root: PathText = "/opt/appliance"
    """Holds releases/<version>/ (one venv each), wheels/, and the `current` and `confirmed`
    links; the service runs `<root>/current/bin/appliance`."""
    public_keys: list[Annotated[str, Field(min_length=40, max_length=64)]] = []
    """Ed25519 public keys (base64, from `appliance model keygen`) whose release signatures are
    accepted. Deliberately not [models] public_keys: a model key can make a gateway score
    badly, a release key makes it run any code, so it is kept by fewer people."""
    public_key_files: list[PathText] = []
    inbox: PathText | None = None
    """Watched directory for release archives (.tar); default `release-inbox` beside the
    store's database."""
    inbox_poll_s: Annotated[float, Field(gt=0, le=3600)] = 2.0
    health_bound_s: Annotated[float, Field(gt=0, le=3600)] = 600.0
    """A new release must, within this time of its start, be READY, have scored windows and
    (with an [uplink]) be connected; otherwise it is rolled back."""
    max_starts: Annotated[int, Field(ge=1, le=20)] = 3
    """Starts a new release gets to pass its health check (a crash, or a power cut, during
    the trial costs one); then the previous release is switched back."""
    keep_releases: Annotated[int, Field(ge=2, le=10)] = 3

    @model_validator(mode="after")
    def _needs_a_key(self) -> ReleaseConfig:
        if not self.public_keys and not self.public_key_files:
            raise ValueError(
                "needs public_keys or public_key_files: an unsigned release is never installed"
            )
        return self
