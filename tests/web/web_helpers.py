"""Run the demo rig with its status page on a free port, for the web tests; fetch and check
/metrics."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ota_helpers import ota_config
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from waiting import running_page

from appliance.config import HttpConfig
from appliance.rig.demo import demo_config
from appliance.status import StatusBoard

TOKEN = "test-token-0123456789abcdef"
DEADLINE_S = 60.0


@contextlib.asynccontextmanager
async def running_rig(
    tmp_path: Path,
    faults: list[str],
    token: str | None = TOKEN,
    models_key: Ed25519PrivateKey | None = None,
) -> AsyncIterator[tuple[str, StatusBoard]]:
    """The demo rig with the page on 127.0.0.1 and a free port; yields (page URL, board). With
    `models_key`, it has a [models] table trusting that key (and no faults)."""
    if models_key is None:
        config = demo_config(tmp_path, faults)
    else:
        config = ota_config(tmp_path, models_key)
    config = config.model_copy(update={"http": HttpConfig(port=0, token=token)})
    async with running_page(config) as (url, board):
        yield url, board


async def metric_families(http: aiohttp.ClientSession, url: str) -> dict[str, Metric]:
    """/metrics parsed by prometheus_client, by family name, after checking the conventions:
    the content type, one name prefix, counters (and only they) ending in _total."""
    async with http.get(url + "metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        families = list(text_string_to_metric_families(await response.text()))
    for family in families:
        assert family.name.startswith("appliance_")
        if family.type == "counter":
            assert all(s.name.endswith("_total") for s in family.samples), family.name
        else:
            assert not any(s.name.endswith("_total") for s in family.samples), family.name
    return {f.name: f for f in families}
