"""Broker URLs (appliance/net/broker.py): what is accepted, what is refused and why, and that a
password never shows in an error, a log line or a repr."""

import pytest

from appliance.net.broker import BrokerAddress, parse_broker_url, shown_url


@pytest.mark.parametrize(
    ("url", "tls", "host", "port"),
    [
        ("mqtt://broker.example.com", False, "broker.example.com", 1883),
        ("mqtts://broker.example.com", True, "broker.example.com", 8883),
        ("mqtts://broker.example.com/", True, "broker.example.com", 8883),
        ("mqtt://10.0.0.7:11883", False, "10.0.0.7", 11883),
        ("mqtts://[::1]", True, "::1", 8883),
        ("mqtt://[fe80::1]:1884", False, "fe80::1", 1884),
    ],
)
def test_the_scheme_chooses_tls_and_the_default_port(
    url: str, tls: bool, host: str, port: int
) -> None:
    address = parse_broker_url(url)

    assert (address.tls, address.host, address.port) == (tls, host, port)
    assert (address.username, address.password) == (None, None)


def test_an_ipv6_host_is_bracketed_again_in_the_url_and_knows_it_is_loopback() -> None:
    address = parse_broker_url("mqtts://[::1]:9883")

    assert address.url == "mqtts://[::1]:9883"
    assert address.is_loopback
    assert parse_broker_url("mqtt://localhost").is_loopback
    assert not parse_broker_url("mqtt://broker.example.com").is_loopback


def test_user_and_password_are_unescaped_and_kept_out_of_url_redacted_and_repr() -> None:
    address = parse_broker_url("mqtts://gw%40plant3:s3cr%3At%2F@broker.example.com:8884")

    assert (address.username, address.password) == ("gw@plant3", "s3cr:t/")
    assert address.url == "mqtts://broker.example.com:8884"
    assert address.redacted() == "mqtts://gw@plant3:***@broker.example.com:8884"
    assert "s3cr" not in repr(address)


def test_a_user_without_a_password_has_none() -> None:
    address = parse_broker_url("mqtts://rx@broker.example.com")

    assert (address.username, address.password) == ("rx", None)
    assert address == BrokerAddress(True, "broker.example.com", 8883, "rx")


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("https://broker.example.com", "must start with mqtt:// or mqtts://"),
        ("broker.example.com:1883", "must start with mqtt:// or mqtts://"),
        ("mqtt://", "no host"),
        ("mqtts://broker.example.com/topic", "no path, query or fragment"),
        ("mqtts://broker.example.com?qos=1", "no path, query or fragment"),
        ("mqtts://broker.example.com#x", "no path, query or fragment"),
        ("mqtt://broker.example.com:99999", "is not a broker URL"),
        ("mqtt://broker.example.com:port", "is not a broker URL"),
        ("mqtt://[::1", "is not a broker URL"),
    ],
)
def test_a_wrong_url_is_refused_saying_what_is_wrong(url: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_broker_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "mqtts://gw:hunter2secret@broker.example.com/path",
        "mqtts://gw:hunter2secret@broker.example.com:99999",
        "https://gw:hunter2secret@broker.example.com",
    ],
)
def test_the_password_never_shows_in_the_error(url: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_broker_url(url)

    assert "hunter2" not in str(refused.value)
    assert "***@broker.example.com" in str(refused.value)


def test_a_shown_value_is_cut_short() -> None:
    shown = shown_url("mqtt://" + "h" * 200)

    assert len(shown) == 80 and shown.endswith("...")
