"""Parts: one (kind, asset) slice of a range of a gateway's outbox, how a range is split into
them, and the rules every part keeps (PROTOCOL.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from appliance.records import Alert, FeatureVector, Score
from appliance.uplink.errors import SchemaError
from appliance.uplink.schema.topics import data_topic
from appliance.uplink.schema.values import (
    Kind,
    check_kind,
    check_name,
    check_part_number,
    check_range,
    check_seq,
)

if TYPE_CHECKING:
    from appliance.uplink.schema.summary_part import SummaryBody

RECORD_KINDS: Final = ("features", "scores", "alerts")
GAP_ASSET: Final = "_"

UplinkRecord = FeatureVector | Score | Alert
"""What a gateway sends: the same union as appliance.store's StoredRecord."""
SeqRecord = tuple[int, UplinkRecord]


@dataclass(frozen=True, slots=True)
class PartHeader:
    """What a part says about itself before its records: enough to account for it in its range
    even when its records cannot be stored (PROTOCOL.md, "Refused parts")."""

    gateway: str
    lo: int
    hi: int
    part: int
    parts: int
    kind: Kind
    asset: str

    @property
    def where(self) -> str:
        return f"part {self.part}/{self.parts} of ({self.lo}, {self.hi}] from {self.gateway}"


class RecordsError(SchemaError):
    """A part whose header is valid (`header`) but whose records or other fields are not."""

    def __init__(self, message: str, reason: str, header: PartHeader) -> None:
        super().__init__(message, reason)
        self.header = header


@dataclass(frozen=True, slots=True, eq=False)
class Part(PartHeader):
    """One (kind, asset) slice of the range (lo, hi] of one gateway's outbox: its header's fields,
    then its records.

    `records` are (seq, record) in increasing seq order, all with lo < seq <= hi; a gap part has
    none. `part` counts from 0 to parts - 1. Not comparable with == (feature values are arrays):
    a part equals only itself, not another part with the same header.
    """

    records: list[SeqRecord] = field(default_factory=list)
    summary: SummaryBody | None = None
    """A summary part's fields (summary_part.py; the `summary` profile); None for the others."""

    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def topic(self, prefix: str) -> str:
        return data_topic(prefix, self.gateway, self.kind, self.asset)

    @property
    def header(self) -> PartHeader:
        return PartHeader(self.gateway, self.lo, self.hi, self.part, self.parts, self.kind,
                          self.asset)  # fmt: skip

    @property
    def where(self) -> str:
        """How error messages name this part."""
        return (
            f"part {self.part}/{self.parts} of ({self.lo}, {self.hi}] "
            f"from {self.gateway}/{self.kind}/{self.asset}"
        )


def record_kind(record: object) -> Kind:
    if isinstance(record, FeatureVector):
        return "features"
    if isinstance(record, Score):
        return "scores"
    if isinstance(record, Alert):
        return "alerts"
    raise SchemaError(f"a {type(record).__name__} is not a record the uplink sends", "bad_record")


def split_range(gateway: str, lo: int, hi: int, rows: Sequence[SeqRecord]) -> list[Part]:
    """The parts that send the range (lo, hi]: `rows` are all the records the gateway still has
    with lo < seq <= hi, in increasing seq order.

    One part per (kind, asset) present, ordered by kind (features, scores, alerts) then asset, so
    the same set of groups always gets the same part numbers; a range with no rows is one gap
    part.
    """
    check_name(gateway, "gateway")
    check_range(lo, hi, f"range of {gateway}")
    groups: dict[tuple[Kind, str], list[SeqRecord]] = {}
    previous = lo
    for seq, record in rows:
        check_seq(seq, previous, hi, f"range ({lo}, {hi}] of {gateway}")
        previous = seq
        kind = record_kind(record)
        asset = check_name(record.asset, f"asset of the {kind} record with seq {seq}")
        groups.setdefault((kind, asset), []).append((seq, record))
    if not groups:
        return [Part(gateway, lo, hi, 0, 1, "gap", GAP_ASSET, [])]
    keys = sorted(groups, key=lambda key: (RECORD_KINDS.index(key[0]), key[1]))
    return [
        Part(gateway, lo, hi, index, len(keys), kind, asset, groups[kind, asset])
        for index, (kind, asset) in enumerate(keys)
    ]


def check_part(part: Part) -> None:
    """The rules decode_part enforces, for a Part built by hand."""
    check_name(part.gateway, "gateway")
    check_kind(part.kind)
    check_name(part.asset, "asset")
    check_range(part.lo, part.hi, part.where)
    check_part_number(part.part, part.parts, part.where)
    check_gap_rules(part, part.where)
    previous = part.lo
    for seq, record in part.records:
        previous = check_seq(seq, previous, part.hi, part.where)
        if record_kind(record) != part.kind or record.asset != part.asset:
            raise SchemaError(
                f"{part.where}: seq {seq} is a {record_kind(record)} record of {record.asset!r}"
            )


def check_gap_rules(part: Part, where: str) -> None:
    """A gap is a range's only part, on asset "_", without records; a summary part has no
    records but its summary; other parts have records."""
    if (part.kind == "summary") != (part.summary is not None):
        raise SchemaError(f"{where}: a summary part, and only one, carries a summary")
    if part.kind == "summary":
        if part.records or part.asset != GAP_ASSET:
            raise SchemaError(f"{where}: a summary part is on asset '_', without records")
    elif part.kind == "gap":
        if part.records or part.parts != 1 or part.asset != GAP_ASSET:
            raise SchemaError(f"{where}: a gap is the only part, asset '_', no records")
    elif not part.records:
        raise SchemaError(f"{where}: has no records (an empty range is a gap part)")
