"""Why an MQTT connection failed, in one sentence (appliance/net/mqtt.py), for the errors the
gateway and the receiver meet: refused credentials, a refused connection, DNS, TLS."""

import asyncio
import ssl

from aiomqtt import MqttCodeError, MqttError
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from appliance.net.mqtt import describe_failure, innermost


def said(exc: BaseException, connected: bool = False) -> str:
    return describe_failure(exc, "broker.example.com", 8883, connected=connected)


def test_refused_credentials_say_so_for_mqtt_3_and_5() -> None:
    not_authorised = "broker refused our credentials (not authorised)"
    bad_password = "broker refused our credentials (bad user name or password)"
    assert said(MqttConnectError(5)) == not_authorised
    assert said(MqttConnectError(ReasonCode(PacketTypes.CONNACK, identifier=135))) == (
        not_authorised
    )
    assert said(MqttConnectError(4)) == bad_password
    assert said(MqttConnectError(ReasonCode(PacketTypes.CONNACK, identifier=134))) == bad_password
    assert said(MqttConnectError(3)).startswith("broker refused the connection: ")


def test_a_refused_connection_and_an_unknown_host_say_where() -> None:
    assert said(MqttError("[Errno 111] Connection refused")) == (
        "connection refused by broker.example.com:8883 (is the broker running?)"
    )
    assert said(MqttError("[Errno -2] Name or service not known")) == (
        "cannot resolve broker host broker.example.com"
    )
    assert said(MqttError("[Errno -3] Temporary failure in name resolution")) == (
        "cannot resolve broker host broker.example.com"
    )


def test_tls_failures_name_the_host_and_why() -> None:
    verify = MqttError(
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer "
        "certificate (_ssl.c:992)"
    )
    assert said(verify) == (
        "TLS: certificate verify failed for host broker.example.com: unable to get local "
        "issuer certificate"
    )
    assert said(ssl.SSLError("tlsv13 alert certificate required")).startswith(
        "TLS: handshake with broker.example.com:8883 failed"
    )


def test_a_lost_connection_differs_from_a_failed_connect() -> None:
    assert said(MqttError("timed out")) == "timed out connecting to broker.example.com:8883"
    assert said(MqttError("Operation timed out"), connected=True) == (
        "broker broker.example.com:8883 stopped answering (timed out)"
    )
    assert said(MqttCodeError(7, "Unexpected disconnection"), connected=True).startswith(
        "connection to broker.example.com:8883 lost ("
    )


def test_innermost_finds_the_real_error_inside_groups() -> None:
    refused = MqttError("[Errno 111] Connection refused")
    group = BaseExceptionGroup(
        "outer", [BaseExceptionGroup("inner", [asyncio.CancelledError(), refused])]
    )
    assert innermost(group) is refused
    cancelled = asyncio.CancelledError()
    assert innermost(BaseExceptionGroup("only", [cancelled])) is cancelled
    assert innermost(refused) is refused
