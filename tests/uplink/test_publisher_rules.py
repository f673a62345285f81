"""The publisher's pure rules: range cutting, the broker-mode ack chain, cursors, backoff and
failure descriptions (no broker, no event loop)."""

import random
import ssl

import numpy as np
from aiomqtt import MqttCodeError, MqttError
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from appliance.config import BrokerAddress
from appliance.records import FeatureVector
from appliance.store import OutboxRange
from appliance.uplink.errors import UplinkError
from appliance.uplink.publisher import (
    Cursors,
    advance_chain,
    backoff_delay,
    describe_failure,
    encode_range,
)
from appliance.uplink.schema import decode_part
from appliance.uplink.settings import UplinkSettings

SETTINGS = UplinkSettings(gateway="gw-a", broker=BrokerAddress(True, "broker.example.com", 8883))


def vectors(count: int, width: int = 200) -> OutboxRange:
    names = tuple(f"f{i}" for i in range(width))
    records = [
        (seq, FeatureVector("pump-1", 1000.0 + seq, names, np.full(width, seq / 3)))
        for seq in range(11, 11 + count)
    ]
    return OutboxRange(10, 10 + count + 5, list(records))  # (10, 35]: the last 5 seqs evicted


def test_a_range_that_fits_keeps_its_end_beyond_its_last_record() -> None:
    prepared = encode_range(vectors(20), "gw-a", "appliance", max_bytes=10**7)

    assert (prepared.lo, prepared.hi, prepared.records) == (10, 35, 20)
    (topic, payload), = prepared.messages  # fmt: skip
    part = decode_part(payload, topic)
    assert topic == "appliance/gw-a/features/pump-1"
    assert (part.lo, part.hi, [seq for seq, _ in part.records]) == (10, 35, list(range(11, 31)))


def test_a_range_over_the_byte_limit_is_cut_to_a_shorter_range_that_fits() -> None:
    whole = encode_range(vectors(20), "gw-a", "appliance", max_bytes=10**7)
    size = len(whole.messages[0][1])

    cut = encode_range(vectors(20), "gw-a", "appliance", max_bytes=size // 3)

    assert len(cut.messages[0][1]) <= size // 3
    assert 1 <= cut.records < 20
    assert cut.hi == 10 + cut.records, "the range ends at its last record kept"
    part = decode_part(cut.messages[0][1], cut.messages[0][0])
    assert [seq for seq, _ in part.records] == list(range(11, 11 + cut.records))


def test_a_single_record_larger_than_the_limit_still_goes_alone() -> None:
    cut = encode_range(vectors(3, width=2000), "gw-a", "appliance", max_bytes=1024)

    assert (cut.records, cut.hi) == (1, 11)


def test_broker_acks_move_only_over_ranges_that_join_up_from_the_acknowledged_seq() -> None:
    completed = {16: 24}  # the live tail got its PUBACKs first

    assert advance_chain(0, completed) == 0
    completed[8] = 16
    assert advance_chain(0, completed) == 0, "(0, 8] still in flight"
    completed[0] = 8
    assert advance_chain(0, completed) == 24
    assert completed == {}


def test_an_ack_skips_the_backlog_it_covers_and_a_rewind_resends_from_it() -> None:
    cursors = Cursors(acked=0, live=40, backlog=8, backlog_end=30)

    cursors.acknowledged(20)
    assert (cursors.acked, cursors.backlog) == (20, 20)
    cursors.acknowledged(35)
    assert cursors.backlog == 30, "the whole backlog is covered"
    epoch = cursors.epoch
    cursors.rewind()
    assert (cursors.backlog, cursors.backlog_end) == (35, 40)
    cursors.backlog_sent(50, epoch)
    assert cursors.backlog == 35, "a range sent before the rewind does not move it on"


def test_backoff_doubles_with_jitter_up_to_its_cap() -> None:
    rng = random.Random(7)
    for failures, ceiling in [(0, 1.0), (1, 2.0), (3, 8.0), (6, 60.0), (40, 60.0)]:
        delays = [backoff_delay(failures, 1.0, 60.0, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), failures
        assert len(set(delays)) > 1, "jittered"


def test_failures_are_described_in_one_clear_sentence() -> None:
    def said(exc: BaseException, connected: bool = False) -> str:
        return describe_failure(exc, SETTINGS, connected=connected)

    not_authorised = ReasonCode(PacketTypes.CONNACK, identifier=135)
    bad_password = ReasonCode(PacketTypes.CONNACK, identifier=134)
    verify = MqttError(
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer "
        "certificate (_ssl.c:992)"
    )
    assert said(MqttConnectError(not_authorised)) == (
        "broker refused our credentials (not authorised)"
    )
    assert said(MqttConnectError(5)) == "broker refused our credentials (not authorised)"
    assert said(MqttConnectError(bad_password)) == (
        "broker refused our credentials (bad user name or password)"
    )
    assert said(verify) == (
        "TLS: certificate verify failed for host broker.example.com: unable to get local "
        "issuer certificate"
    )
    assert said(ssl.SSLError("tlsv13 alert certificate required")).startswith(
        "TLS: handshake with broker.example.com:8883 failed"
    )
    assert said(MqttError("[Errno 111] Connection refused")) == (
        "connection refused by broker.example.com:8883 (is the broker running?)"
    )
    assert said(MqttError("timed out")) == "timed out connecting to broker.example.com:8883"
    assert said(MqttError("[Errno -2] Name or service not known")) == (
        "cannot resolve broker host broker.example.com"
    )
    assert said(MqttCodeError(7, "Unexpected disconnection"), connected=True).startswith(
        "connection to broker.example.com:8883 lost ("
    )
    assert said(MqttError("Operation timed out"), connected=True) == (
        "broker broker.example.com:8883 stopped answering (timed out)"
    )
    assert said(UplinkError("TLS: cannot load ca_file /x: no such file")) == (
        "TLS: cannot load ca_file /x: no such file"
    )
