"""The publisher's pure rules: range cutting, the broker-mode ack chain, cursors and failure
descriptions (no broker, no event loop). The backoff and the MQTT failure sentences it shares with
the receiver are in tests/net."""

import numpy as np
from aiomqtt import MqttError
from aiomqtt.exceptions import MqttConnectError

from appliance.config import BrokerAddress
from appliance.errors import StoreError
from appliance.records import FeatureVector
from appliance.store import OutboxRange
from appliance.uplink.connection import describe_failure
from appliance.uplink.errors import UplinkError
from appliance.uplink.ranges import Cursors, Ledger, encode_range
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
    ledger = Ledger()
    live = ledger.sent(16, 24, parts=1, records=8)
    live.acked_parts.add(0)  # the live tail got its PUBACK first

    assert ledger.chain_end(0) == 0
    ledger.sent(8, 16, parts=1, records=8).acked_parts.add(0)
    first = ledger.sent(0, 8, parts=2, records=8)
    first.acked_parts.add(1)
    assert ledger.chain_end(0) == 0, "(0, 8] has a part in flight"
    first.acked_parts.add(0)
    assert ledger.chain_end(0) == 24
    ledger.forget_up_to(24)
    assert len(ledger) == 0


def test_the_ledger_keeps_a_split_and_its_acknowledged_parts_until_it_changes() -> None:
    ledger = Ledger()
    ledger.sent(0, 8, parts=3, records=8).acked_parts.add(1)

    assert ledger.sent(0, 8, parts=3, records=8).acked_parts == {1}, "resumed as it was"
    assert ledger.next_start(-1) == 0 and ledger.next_start(0) is None
    assert ledger.containing(5) is ledger.at(0) and ledger.containing(9) is None
    assert ledger.sent(0, 8, parts=2, records=6).acked_parts == set(), "a new split starts over"
    ledger.at(0).acked_parts.add(0)  # type: ignore[union-attr]
    ledger.forget_acks()
    assert ledger.at(0).acked_parts == set()  # type: ignore[union-attr]


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


def test_failures_are_described_in_one_clear_sentence() -> None:
    def said(exc: BaseException, connected: bool = False) -> str:
        return describe_failure(exc, SETTINGS, connected=connected)

    assert said(MqttConnectError(5)) == "broker refused our credentials (not authorised)"
    assert said(MqttError("[Errno 111] Connection refused")) == (
        "connection refused by broker.example.com:8883 (is the broker running?)"
    )
    assert said(MqttError("Operation timed out"), connected=True) == (
        "broker broker.example.com:8883 stopped answering (timed out)"
    )
    assert said(UplinkError("TLS: cannot load ca_file /x: no such file")) == (
        "TLS: cannot load ca_file /x: no such file"
    ), "the uplink's own errors say it themselves"
    assert said(StoreError("database is locked: connection refused")) == (
        "database is locked: connection refused"
    )
