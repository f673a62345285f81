"""The [uplink] table: broker URL, credentials and TLS rules, and what check-config says."""

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from appliance.cli import main
from appliance.config import parse_config
from appliance.errors import ConfigError
from appliance.uplink.settings import uplink_settings

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "gateway.toml"


def with_uplink(**uplink: Any) -> dict[str, Any]:
    document = tomllib.loads(EXAMPLE.read_text())
    document["uplink"] = uplink
    return document


def refusal(**uplink: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(with_uplink(**uplink), "site.toml")
    return str(caught.value)


def test_a_tls_uplink_with_password_file_gives_settings_with_the_password_read(
    tmp_path: Path,
) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    config = parse_config(
        with_uplink(
            broker="mqtts://broker.example.com",
            username="plant3-pump-gw1",
            password_file=str(secret),
            ca_file=str(ca),
            replay_records_per_s=500,
        )
    )

    assert config.uplink is not None
    settings = uplink_settings(config.gateway.id, config.uplink)
    assert settings.broker.url == "mqtts://broker.example.com:8883"
    assert (settings.username, settings.password, settings.ca_file) == ("plant3-pump-gw1",
                                                                        "s3cret", ca)  # fmt: skip
    assert (settings.prefix, settings.ack, settings.max_records_per_message) == (
        "appliance", "receiver", 500,
    )  # fmt: skip
    assert settings.replay_records_per_s == 500.0


@pytest.mark.parametrize(
    ("uplink", "message"),
    [
        ({"broker": "mqtts://broker.example.com"}, "an mqtts:// broker needs credentials"),
        ({"broker": "mqtt://broker.example.com"}, "plain mqtt:// to broker.example.com"),
        ({"broker": "https://b.example.com", "username": "u", "password": "p"}, "mqtt:// or mqtts"),
        ({"broker": "mqtts://u:p@b.example.com"}, "credentials do not belong in the URL"),
        ({"broker": "mqtts://b.example.com", "username": "u"}, "needs a password"),
        ({"broker": "mqtts://b.example.com", "password": "p"}, "a password needs a username"),
        (
            {"broker": "mqtts://b", "username": "u", "password": "p", "password_file": "/f"},
            "password or password_file, not both",
        ),
        ({"broker": "mqtt://127.0.0.1", "ca_file": "/ca.crt"}, "need(s) an mqtts:// broker"),
        ({"broker": "mqtts://b", "client_key": "/k.pem"}, "client_key needs client_cert"),
        ({"broker": "mqtts://b", "username": "u", "password": "p", "ack": "sometimes"}, "ack"),
        (
            {"broker": "mqtts://b", "username": "u", "password": "p", "topic_prefix": "a/#"},
            "prefix",
        ),
        ({"broker": "mqtts://b", "username": "u", "password": "p", "qos": 2}, "unknown key"),
        (
            {"broker": "mqtts://b", "username": "u", "password": "p", "replay_records_per_s": "9"},
            "replay_records_per_s",
        ),
    ],
)
def test_unsafe_or_wrong_uplinks_are_refused_naming_the_problem(
    uplink: dict[str, Any], message: str
) -> None:
    error = refusal(**uplink)

    assert error.startswith("site.toml: uplink") and "\n" not in error
    assert "uplink" in error and message in error


def uncommented_table(text: str, name: str) -> dict[str, Any]:
    """The commented-out `# [name]` table of the example, up to the next blank line, parsed."""
    block = text[text.index(f"# [{name}]") :].split("\n\n")[0].splitlines()
    return tomllib.loads("\n".join(re.sub(r"^# ?", "", line) for line in block))


def test_the_commented_example_in_gateway_toml_is_valid_once_uncommented() -> None:
    text = EXAMPLE.read_text()
    document = tomllib.loads(text) | uncommented_table(text, "uplink")

    config = parse_config(document, "gateway.toml")

    assert config.uplink is not None
    assert config.uplink.address.url == "mqtts://broker.example.com:8883"
    shown = config.uplink.model_fields_set | {"password"}  # named in password_file's comment
    assert shown == set(type(config.uplink).model_fields), "the example shows every key"


def test_the_commented_models_example_is_valid_and_shows_every_key() -> None:
    text = EXAMPLE.read_text()
    document = tomllib.loads(text) | uncommented_table(text, "models")

    config = parse_config(document, "gateway.toml")

    assert config.models is not None
    assert config.models.model_fields_set == set(type(config.models).model_fields)


def test_plain_mqtt_is_accepted_to_this_host_or_when_allowed_explicitly() -> None:
    local = parse_config(with_uplink(broker="mqtt://localhost"))
    loopback = parse_config(with_uplink(broker="mqtt://[::1]:1884", ack="broker"))
    allowed = parse_config(with_uplink(broker="mqtt://10.0.0.5", allow_insecure=True))
    cert = parse_config(with_uplink(broker="mqtts://b.example.com", client_cert="/c.pem"))

    assert local.uplink is not None and local.uplink.address.url == "mqtt://localhost:1883"
    assert loopback.uplink is not None and loopback.uplink.address.is_loopback
    assert allowed.uplink is not None and not allowed.uplink.address.is_loopback
    assert cert.uplink is not None and cert.uplink.client_cert == "/c.pem"


def test_missing_files_are_named_by_check_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = EXAMPLE.read_text() + (
        "\n[uplink]\n"
        'broker = "mqtts://broker.example.com:8883"\n'
        'username = "plant3-pump-gw1"\n'
        f'password_file = "{tmp_path / "nowhere"}"\n'
    )
    path = tmp_path / "gateway.toml"
    path.write_text(text)

    assert main(["check-config", str(path)]) == 2

    err = capsys.readouterr().err
    assert f"uplink.password_file: cannot read {tmp_path / 'nowhere'}" in err


def test_check_config_describes_the_uplink(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret")
    text = EXAMPLE.read_text() + (
        "\n[uplink]\n"
        'broker = "mqtts://broker.example.com"\n'
        'username = "plant3-pump-gw1"\n'
        f'password_file = "{secret}"\n'
    )
    path = tmp_path / "gateway.toml"
    path.write_text(text)

    assert main(["check-config", str(path)]) == 0
    assert main(["check-config", str(EXAMPLE)]) == 0

    with_uplink_line, without = capsys.readouterr().out.splitlines()
    assert (
        "uplink to mqtts://broker.example.com:8883 as user plant3-pump-gw1, "
        "topics appliance/plant3-pump-gw1/..., ack by receiver, " in with_uplink_line
    )
    assert "no uplink (records stay on the gateway), " in without


def test_the_commented_http_example_is_valid_and_shows_every_key() -> None:
    text = EXAMPLE.read_text()
    document = tomllib.loads(text) | uncommented_table(text, "http")

    config = parse_config(document, "gateway.toml")

    assert config.http is not None
    shown = config.http.model_fields_set | {"token"}  # named in token_file's comment
    assert shown == set(type(config.http).model_fields), "the example shows every key"


@pytest.mark.parametrize(
    ("uplink", "key"),
    [
        ({"detail": "minimal"}, "uplink.detail"),
        ({"detail": "summary", "summary_margin_s": -1.0}, "uplink.summary_margin_s"),
    ],
)
def test_an_unknown_uplink_profile_or_a_negative_margin_is_refused_naming_the_key(
    uplink: dict[str, Any], key: str
) -> None:
    error = refusal(broker="mqtt://127.0.0.1", **uplink)

    assert error.startswith(f"site.toml: {key}") and "\n" not in error


def test_the_summary_profile_reaches_the_uplink_settings() -> None:
    document = with_uplink(broker="mqtt://127.0.0.1", detail="summary", summary_margin_s=30.0)
    config = parse_config(document, "site.toml")
    assert config.uplink is not None

    settings = uplink_settings("gw-1", config.uplink)

    assert (settings.detail, settings.summary_margin_s) == ("summary", 30.0)
    assert uplink_settings("gw-1", config.uplink.model_copy(update={"detail": "full"})).detail == (
        "full"
    )


@pytest.mark.parametrize(
    ("uplink", "live_batch"),
    [
        ({}, 5.0),
        ({"detail": "summary"}, 20.0),
        ({"detail": "summary", "live_batch_s": 7.5}, 7.5),
        ({"live_batch_s": 0.0}, 0.0),
    ],
)
def test_the_live_batch_is_the_profiles_default_unless_set(
    uplink: dict[str, Any], live_batch: float
) -> None:
    config = parse_config(with_uplink(broker="mqtt://127.0.0.1", **uplink), "site.toml")
    assert config.uplink is not None

    assert uplink_settings("gw-1", config.uplink).live_batch == live_batch
