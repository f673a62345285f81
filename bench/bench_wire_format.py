"""Wire formats compared (issue 15, item 1): bytes per record and encode/decode cost of candidate
encodings of the uplink's parts, on the demo's records (a 49-feature vector and its score per
second; one alert per 50 records in the alert column), for parts of 1, 10, 100 and 500 records.

Candidates: JSON as sent before (appliance/uplink/schema, format "json"); JSON deflated; msgpack
with the columnar layout of the binary format (seqs and times delta-coded, feature values in one
block per part) with float64 or float32 values, raw or deflated; the shipped binary format
(decode_part: every check included); CBOR and zstd variants when cbor2 / zstandard are
installed (not dependencies: `pip install cbor2 zstandard` to include them).

Decode cost: decode_part for the shipped formats (JSON and binary, all checks), the bare
parse (no checks) for the others. Encode cost likewise: encode_part, or the bare packing.

    .venv/bin/python bench/bench_wire_format.py [--records 20000]
        [--append-results bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
from uplink_bench_common import GATEWAY, PREFIX, demo_records

from appliance.records import Alert, FeatureVector
from appliance.uplink.schema import Part, decode_part, encode_part, split_range
from appliance.uplink.schema.encode_binary import binary_columns

PART_SIZES = (1, 10, 100, 500)
Codec = tuple[Callable[[Part], bytes], Callable[[bytes, str], object]]


def header(part: Part) -> dict[str, Any]:
    return {"v": 1, "gateway": part.gateway, "lo": part.lo, "hi": part.hi, "part": part.part,
            "parts": part.parts, "kind": part.kind, "asset": part.asset}  # fmt: skip


def columns_f8(part: Part) -> dict[str, Any]:
    """The binary format's columns with the float64 feature values as they were."""
    body = header(part) | binary_columns(part)
    if part.kind == "features":
        values = [record.values for _, record in part.records if isinstance(record, FeatureVector)]
        body["dtype"], body["values"] = "f8", np.concatenate(values).astype("<f8").tobytes()
    return body


def candidates() -> dict[str, Codec]:
    def packed(part: Part) -> bytes:
        return bytes(msgpack.packb(header(part) | binary_columns(part), use_bin_type=True))

    found: dict[str, Codec] = {
        "JSON (before; decode_part)": (
            lambda p: encode_part(p, "json"), lambda b, t: decode_part(b, t)),
        "JSON + deflate 6 (parse only)": (
            lambda p: zlib.compress(encode_part(p, "json"), 6),
            lambda b, t: json.loads(zlib.decompress(b))),
        "msgpack columnar, float64 values, deflate 6 (parse only)": (
            lambda p: zlib.compress(msgpack.packb(columns_f8(p), use_bin_type=True), 6),
            lambda b, t: msgpack.unpackb(zlib.decompress(b))),
        "msgpack columnar, float32 values, raw (parse only)": (
            packed, lambda b, t: msgpack.unpackb(b)),
        "msgpack columnar, float32 values, deflate 1 (parse only)": (
            lambda p: zlib.compress(packed(p), 1),
            lambda b, t: msgpack.unpackb(zlib.decompress(b))),
        "**binary (shipped): msgpack columnar, float32, deflate 6; decode_part**": (
            lambda p: encode_part(p, "binary"), lambda b, t: decode_part(b, t)),
    }  # fmt: skip
    try:
        import cbor2

        found["CBOR columnar, float32 values, deflate 6 (parse only)"] = (
            lambda p: zlib.compress(cbor2.dumps(header(p) | binary_columns(p)), 6),
            lambda b, t: cbor2.loads(zlib.decompress(b)),
        )
    except ImportError:
        print("cbor2 not installed: its row is left out")
    try:
        import zstandard

        compressor, decompressor = zstandard.ZstdCompressor(3), zstandard.ZstdDecompressor()
        found["msgpack columnar, float32 values, zstd 3 (parse only)"] = (
            lambda p: compressor.compress(packed(p)),
            lambda b, t: msgpack.unpackb(decompressor.decompress(b)),
        )
    except ImportError:
        print("zstandard not installed: its row is left out")
    return found


def parts_of(records: int, size: int) -> list[Part]:
    """`records` demo records (vector, score, vector, ...; every 50th score an alert) in ranges
    of `size` records, split as the gateway splits them."""
    rows = []
    for seq, record in enumerate(demo_records(records // 2 + 1), start=1):
        if seq % 50 == 0:
            record = Alert(record.asset, 1.767e9 + seq, "warning", "spike_raised",
                           f"{record.asset}: spike on accel_x", "accel_x")  # fmt: skip
        rows.append((seq, record))
    rows = rows[:records]
    parts: list[Part] = []
    for lo in range(0, records, size):
        chunk = rows[lo : lo + size]
        parts += split_range(GATEWAY, lo, chunk[-1][0], chunk)
    return parts


@dataclass
class Row:
    name: str
    bytes_per_record: dict[int, float]
    encode_us: float
    decode_us: float


def measure(name: str, codec: Codec, parts_by_size: dict[int, list[Part]], records: int) -> Row:
    encode, decode = codec
    sizes = {}
    for size, parts in parts_by_size.items():
        sizes[size] = sum(len(encode(part)) for part in parts) / records
    parts = parts_by_size[500]
    started = time.process_time()
    payloads = [(encode(part), part.topic(PREFIX)) for part in parts]
    encode_s = time.process_time() - started
    started = time.process_time()
    for payload, topic in payloads:
        decode(payload, topic)
    decode_s = time.process_time() - started
    return Row(name, sizes, encode_s / records * 1e6, decode_s / records * 1e6)


def table(rows: list[Row]) -> list[str]:
    out = [
        "| encoding | bytes/record, parts of " + " | ".join(map(str, PART_SIZES))
        + " | encode us/record (500) | decode us/record (500) |",
        "|---|" + "---|" * (len(PART_SIZES) + 2),
    ]  # fmt: skip
    for row in rows:
        sizes = " | ".join(f"{row.bytes_per_record[size]:,.0f}" for size in PART_SIZES)
        out.append(f"| {row.name} | {sizes} | {row.encode_us:.1f} | {row.decode_us:.1f} |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--append-results", type=Path, help="append a markdown section here")
    args = parser.parse_args()
    parts_by_size = {size: parts_of(args.records, size) for size in PART_SIZES}
    rows = [measure(name, codec, parts_by_size, args.records)
            for name, codec in candidates().items()]  # fmt: skip
    lines = table(rows)
    print(*lines, sep="\n")
    json_row = rows[0]
    binary_row = next(row for row in rows if "shipped" in row.name)
    shares = [binary_row.bytes_per_record[n] / json_row.bytes_per_record[n] for n in PART_SIZES]
    pairs = zip(PART_SIZES, shares, strict=True)
    ratios = ", ".join(f"parts of {n}: {share:.2f}" for n, share in pairs)
    speed = json_row.decode_us / binary_row.decode_us
    summary = f"Binary / JSON bytes: {ratios}; decode (all checks) {speed:.1f}x faster."
    print(summary)
    if args.append_results is not None:
        command = shlex.join([".venv/bin/python", "bench/bench_wire_format.py", *sys.argv[1:]])
        with args.append_results.open("a", encoding="utf-8") as results:
            results.write("\n".join([
                f"\n## Uplink wire formats compared ({datetime.now(UTC):%Y-%m-%d})\n",
                f"Command: `{command}`\n",
                f"Machine: {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
                f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f} "
                "(shared; costs are CPU time of this process). Records: the demo's 49-feature "
                f"vector and its score per second, every 50th record an alert; {args.records:,} "
                "records cut into ranges of 1, 10, 100 and 500 records, split into one part per "
                "kind as the gateway does. Costs on the parts of 500.\n",
                *lines, "", summary, "",
            ]))  # fmt: skip


if __name__ == "__main__":
    main()
