"""Fixtures shared by every test package.

A real mosquitto (tests/broker.py): `broker` is a TLS broker with the shipped ACL and users
gw-a, gw-b, gw-c and receiver; `make_broker(...)` builds others (plain TCP, other users, extra
config). Every broker is killed and its directory removed at teardown. Tests that need one are
skipped, with the reason, where mosquitto is not installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from broker import (
    TEST_GATEWAYS,
    Broker,
    BrokerFactory,
    TlsFiles,
    make_tls_files,
    mosquitto_available,
)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA and a loopback server certificate, made once per test session."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def make_broker(tls_files: TlsFiles) -> Iterator[BrokerFactory]:
    """make_broker(users=TEST_GATEWAYS, tls=True, acl=None, extra_config="") -> started Broker."""
    if not mosquitto_available():
        pytest.skip("mosquitto and mosquitto_passwd are not installed (apt-get install mosquitto)")
    brokers: list[Broker] = []

    def make(
        users: tuple[str, ...] = TEST_GATEWAYS,
        tls: bool = True,
        acl: str | None = None,
        extra_config: str = "",
    ) -> Broker:
        broker = Broker.create(
            users, tls=tls_files if tls else None, acl=acl, extra_config=extra_config
        )
        brokers.append(broker)
        broker.start()
        return broker

    yield make
    for broker in brokers:
        broker.close()


@pytest.fixture
def broker(make_broker: BrokerFactory) -> Broker:
    return make_broker()


@pytest.fixture
def wrong_ca(tmp_path: Path) -> Path:
    """A CA that did not sign the broker's certificate."""
    return make_tls_files(tmp_path / "wrong-ca", name="wrong").ca_path
