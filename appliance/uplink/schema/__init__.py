"""Uplink topics and payloads, shared by the gateway's publisher and the cloud receiver (pure).

The protocol (ranges, parts, acknowledgement) is described in appliance/uplink/PROTOCOL.md.
Everything here takes values or bytes in and gives values or bytes out; nothing does I/O.
Every refusal is a SchemaError whose message names the field and where it was found.

The modules: values.py (version, limits, checks of single values), json_body.py and
binary_body.py (bytes to a map and back, per wire format), topics.py, parts.py (a range split
into parts), encode.py and decode.py (a part to bytes and back, either format), encode_binary.py
and decode_binary.py (a binary part's columns), acks_and_status.py (the retained ack and status).
Import from here.
"""

from __future__ import annotations

from appliance.uplink.errors import SchemaError
from appliance.uplink.schema.acks_and_status import (
    OFFLINE,
    ONLINE,
    Ack,
    Status,
    decode_ack,
    decode_status,
    encode_ack,
    encode_status,
)
from appliance.uplink.schema.decode import MAX_PART_BYTES, decode_part
from appliance.uplink.schema.encode import encode_part
from appliance.uplink.schema.json_body import check_version, dump_json, load_json
from appliance.uplink.schema.parts import (
    GAP_ASSET,
    Part,
    PartHeader,
    RecordsError,
    SeqRecord,
    UplinkRecord,
    record_kind,
    split_range,
)
from appliance.uplink.schema.schema_refs import (
    SchemaBook,
    UnknownSchemas,
    names_text,
    schema_ref,
)
from appliance.uplink.schema.topics import (
    DataTopic,
    ack_topic,
    data_topic,
    parse_data_topic,
    shared_subscription,
    status_topic,
)
from appliance.uplink.schema.values import (
    KINDS,
    MAX_SEQ,
    MAX_TIME,
    MIN_TIME,
    PROTOCOL_VERSION,
    WIRE_FORMATS,
    Kind,
    WireFormat,
    check_name,
    check_prefix,
)

__all__ = [
    "GAP_ASSET",
    "KINDS",
    "MAX_PART_BYTES",
    "MAX_SEQ",
    "MAX_TIME",
    "MIN_TIME",
    "OFFLINE",
    "ONLINE",
    "PROTOCOL_VERSION",
    "WIRE_FORMATS",
    "Ack",
    "DataTopic",
    "Kind",
    "Part",
    "PartHeader",
    "RecordsError",
    "SchemaBook",
    "SchemaError",
    "SeqRecord",
    "Status",
    "UnknownSchemas",
    "UplinkRecord",
    "WireFormat",
    "ack_topic",
    "check_name",
    "check_prefix",
    "check_version",
    "data_topic",
    "decode_ack",
    "decode_part",
    "decode_status",
    "dump_json",
    "encode_ack",
    "encode_part",
    "encode_status",
    "load_json",
    "names_text",
    "parse_data_topic",
    "record_kind",
    "schema_ref",
    "shared_subscription",
    "split_range",
    "status_topic",
]
