"""SMS-SUBMIT PDUs (3GPP TS 23.040, alphabets TS 23.038), pure: text in, hex out, and back.

Text that fits the GSM 03.38 default alphabet plus its extension table goes as GSM-7 (an
extension character such as € [ ] { } | ^ ~ \\ is ESC + code: two septets); anything else goes
as UCS-2, which carries any Unicode text as UTF-16 (characters beyond the BMP as surrogate
pairs, as phones do). Up to 160 septets / 70 code units is one SMS; longer text is split into
parts of at most 153 septets / 67 code units, each with a concatenation header (IEI 0x00,
8-bit reference), and a split never falls inside an escape pair or a surrogate pair (such a
part is one unit shorter). GSM-7 text after the 6-octet header starts on the next septet
boundary (one fill bit).

The PDU for AT+CMGS starts with "00" (use the SMSC stored on the SIM); `tpdu_length` is the
length without that octet, the number AT+CMGS=<length> wants.

Destination: "+<digits>" is sent as international (type 0x91); digits without "+" are sent
as dialled (type 0x81, "unknown": the network applies national dialling rules, which is what
a handset does for a national number such as 0171...). Spaces, dashes, dots and parentheses
are dropped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from appliance.sms.errors import PduError

GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
ESCAPE = 0x1B
GSM7_EXTENSION = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}
_SEPTET_OF = {char: code for code, char in enumerate(GSM7_BASIC) if code != ESCAPE}
_EXTENSION_CHAR = {code: char for char, code in GSM7_EXTENSION.items()}

SINGLE_GSM7_SEPTETS = 160
PART_GSM7_SEPTETS = 153  # 160 minus the 6-octet header and its fill bit (7 septets)
SINGLE_UCS2_OCTETS = 140
PART_UCS2_OCTETS = 134  # 67 UTF-16 code units
MAX_PARTS = 255
CONCAT_8BIT_IEI = 0x00
CONCAT_16BIT_IEI = 0x08
TYPE_INTERNATIONAL = 0x91
TYPE_UNKNOWN = 0x81
DEFAULT_VALIDITY_MINUTES = 24 * 60
_NUMBER_DIGITS = "0123456789*#"
_NUMBER_NIBBLES = "0123456789AB"
_NUMBER_PUNCTUATION = str.maketrans("", "", " -.()")


class Encoding(Enum):
    GSM7 = 0x00
    UCS2 = 0x08


@dataclass(frozen=True)
class Pdu:
    """One part as AT+CMGS wants it: `hex` (SMSC octet + TPDU), `tpdu_length` in octets."""

    hex: str
    tpdu_length: int


@dataclass(frozen=True)
class Concat:
    reference: int
    total: int
    sequence: int  # 1-based


@dataclass(frozen=True)
class Submit:
    """A decoded SMS-SUBMIT. `text` is this part's text only."""

    number: str
    text: str
    encoding: Encoding
    concat: Concat | None
    message_reference: int
    validity_minutes: int | None
    status_report: bool
    smsc: str | None


# --- text -> parts --------------------------------------------------------------------------


def gsm7_septets(text: str) -> list[tuple[int, ...]] | None:
    """Septets of each character (1 or 2: ESC + code), or None if `text` is not GSM-7."""
    units: list[tuple[int, ...]] = []
    for char in text:
        if char in _SEPTET_OF:
            units.append((_SEPTET_OF[char],))
        elif char in GSM7_EXTENSION:
            units.append((ESCAPE, GSM7_EXTENSION[char]))
        else:
            return None
    return units


def ucs2_units(text: str) -> list[bytes]:
    """UTF-16-BE bytes of each character (2, or 4 for a surrogate pair)."""
    try:
        return [char.encode("utf-16-be") for char in text]
    except UnicodeEncodeError as error:  # a lone surrogate is not text
        raise PduError(f"text is not valid Unicode: {error.reason}") from error


Unit = TypeVar("Unit", tuple[int, ...], bytes)


def split_units(units: Sequence[Unit], single: int, part: int) -> list[list[Unit]]:
    """Group units into parts: all in one if they fit `single`, else greedily up to `part`."""
    if sum(len(unit) for unit in units) <= single:
        return [list(units)]
    parts: list[list[Unit]] = [[]]
    used = 0
    for unit in units:
        if used + len(unit) > part:
            parts.append([])
            used = 0
        parts[-1].append(unit)
        used += len(unit)
    return parts


def text_parts(text: str) -> tuple[Encoding, list[bytes]]:
    """The encoding for `text` and each part's payload (septet values or UTF-16 bytes)."""
    septets = gsm7_septets(text)
    if septets is not None:
        groups = split_units(septets, SINGLE_GSM7_SEPTETS, PART_GSM7_SEPTETS)
        return Encoding.GSM7, [bytes(s for unit in group for s in unit) for group in groups]
    groups_ucs2 = split_units(ucs2_units(text), SINGLE_UCS2_OCTETS, PART_UCS2_OCTETS)
    return Encoding.UCS2, [b"".join(group) for group in groups_ucs2]


def count_parts(text: str) -> int:
    """How many SMS `text` takes (for policies that want one-part alerts)."""
    return len(text_parts(text)[1])


# --- encoding -------------------------------------------------------------------------------


def encode_sms(
    number: str,
    text: str,
    reference: int,
    *,
    validity_minutes: int | None = DEFAULT_VALIDITY_MINUTES,
    status_report: bool = False,
) -> list[Pdu]:
    """The PDUs of `text` to `number`; `reference` (0-255) ties the parts of a long message.

    Deterministic: the same arguments give the same PDUs, so a sender that stores
    (number, text, reference) can resend exactly the parts that did not go.
    """
    if not 0 <= reference <= 255:
        raise PduError(f"concatenation reference {reference} is not 0-255")
    address = encode_address(number)
    encoding, payloads = text_parts(text)
    if len(payloads) > MAX_PARTS:
        raise PduError(f"text needs {len(payloads)} parts, at most {MAX_PARTS} are possible")
    head = _submit_head(address, encoding, len(payloads) > 1, validity_minutes, status_report)
    pdus = []
    for sequence, payload in enumerate(payloads, start=1):
        udh = _concat_header(reference, len(payloads), sequence) if len(payloads) > 1 else b""
        tpdu = head + _user_data(encoding, udh, payload)
        pdus.append(Pdu("00" + tpdu.hex().upper(), len(tpdu)))
    return pdus


def _submit_head(
    address: bytes,
    encoding: Encoding,
    has_header: bool,
    validity_minutes: int | None,
    status_report: bool,
) -> bytes:
    first = 0x01  # TP-MTI SMS-SUBMIT
    first |= 0x10 if validity_minutes is not None else 0x00  # TP-VPF relative
    first |= 0x20 if status_report else 0x00  # TP-SRR
    first |= 0x40 if has_header else 0x00  # TP-UDHI
    head = bytes([first, 0x00]) + address + bytes([0x00, encoding.value])  # MR, DA, PID, DCS
    if validity_minutes is not None:
        head += bytes([relative_validity(validity_minutes)])
    return head


def _concat_header(reference: int, total: int, sequence: int) -> bytes:
    return bytes([5, CONCAT_8BIT_IEI, 3, reference, total, sequence])


def _user_data(encoding: Encoding, udh: bytes, payload: bytes) -> bytes:
    """TP-UDL + TP-UD; `payload` is septet values (GSM-7) or UTF-16 bytes (UCS-2)."""
    if encoding is Encoding.UCS2:
        return bytes([len(udh) + len(payload)]) + udh + payload
    header_septets = math.ceil(len(udh) * 8 / 7)
    packed = pack_septets(payload, header_septets * 7)
    return bytes([header_septets + len(payload)]) + udh + packed[len(udh) :]


def pack_septets(septets: bytes, offset_bits: int = 0) -> bytes:
    """Septets packed LSB first, starting `offset_bits` into the output (leading bits zero)."""
    value = 0
    for index, septet in enumerate(septets):
        value |= septet << (offset_bits + 7 * index)
    return value.to_bytes(math.ceil((offset_bits + 7 * len(septets)) / 8), "little")


def unpack_septets(data: bytes, count: int, offset_bits: int = 0) -> bytes:
    value = int.from_bytes(data, "little")
    return bytes((value >> (offset_bits + 7 * index)) & 0x7F for index in range(count))


def encode_address(number: str) -> bytes:
    """TP-DA: digit count, type of address, BCD digits (swapped nibbles, F-padded)."""
    cleaned = number.translate(_NUMBER_PUNCTUATION)
    international = cleaned.startswith("+")
    digits = cleaned[1:] if international else cleaned
    if not digits or len(digits) > 20 or any(d not in _NUMBER_DIGITS for d in digits):
        raise PduError(f"not a phone number: {number!r}")
    if international and not digits.isdigit():
        raise PduError(f"an international number has digits only: {number!r}")
    nibbles = "".join(_NUMBER_NIBBLES[_NUMBER_DIGITS.index(d)] for d in digits)
    nibbles += "F" * (len(nibbles) % 2)
    swapped = "".join(nibbles[i + 1] + nibbles[i] for i in range(0, len(nibbles), 2))
    kind = TYPE_INTERNATIONAL if international else TYPE_UNKNOWN
    return bytes([len(digits), kind]) + bytes.fromhex(swapped)


def validity_minutes_of(vp: int) -> int:
    """Minutes of a relative TP-VP octet (23.040 9.2.3.12.1)."""
    if vp <= 143:
        return (vp + 1) * 5
    if vp <= 167:
        return 720 + (vp - 143) * 30
    if vp <= 196:
        return (vp - 166) * 24 * 60
    return (vp - 192) * 7 * 24 * 60


def relative_validity(minutes: int) -> int:
    """The smallest relative TP-VP lasting at least `minutes` (at most 63 weeks)."""
    return next((vp for vp in range(256) if validity_minutes_of(vp) >= minutes), 255)


# --- decoding -------------------------------------------------------------------------------


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0

    def take(self, n: int) -> bytes:
        if self.position + n > len(self.data):
            raise PduError(f"PDU ends early: wanted {n} octets at {self.position}")
        chunk = self.data[self.position : self.position + n]
        self.position += n
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def rest(self) -> bytes:
        return self.take(len(self.data) - self.position)


def decode_submit(pdu: str, tpdu_length: int | None = None) -> Submit:
    """Decode AT+CMGS data (SMSC octets + SMS-SUBMIT, hex); PduError if it is not valid.

    Strict where our encoder promises something: a part ending in a lone ESC (a split escape
    pair) or in half a surrogate pair is refused, and so is a length that disagrees with
    `tpdu_length` or with the user data length.
    """
    try:
        data = bytes.fromhex(pdu.strip())
    except ValueError as error:
        raise PduError(f"PDU is not hex: {error}") from error
    cursor = _Cursor(data)
    smsc = _decode_smsc(cursor.take(cursor.byte()))
    if tpdu_length is not None and len(data) - cursor.position != tpdu_length:
        raise PduError(f"TPDU is {len(data) - cursor.position} octets, AT+CMGS said {tpdu_length}")
    first = cursor.byte()
    if first & 0x03 != 0x01:
        raise PduError(f"not an SMS-SUBMIT (first octet {first:#04x})")
    reference = cursor.byte()
    number = _decode_address(cursor)
    cursor.byte()  # TP-PID
    encoding = _encoding_of(cursor.byte())
    validity = _decode_validity(cursor, (first >> 3) & 0x03)
    text, concat = _decode_user_data(cursor, encoding, has_header=bool(first & 0x40))
    return Submit(number, text, encoding, concat, reference, validity, bool(first & 0x20), smsc)


def _decode_smsc(octets: bytes) -> str | None:
    if not octets:
        return None
    digits = _bcd_digits(octets[1:])
    return "+" + digits if octets[0] == TYPE_INTERNATIONAL else digits


def _decode_address(cursor: _Cursor) -> str:
    n_digits = cursor.byte()
    kind = cursor.byte()
    if kind & 0x70 == 0x50:
        raise PduError("alphanumeric destination addresses are not supported")
    digits = _bcd_digits(cursor.take((n_digits + 1) // 2))[:n_digits]
    return "+" + digits if kind & 0x70 == 0x10 else digits


def _bcd_digits(octets: bytes) -> str:
    nibbles = "".join(f"{octet & 0x0F:X}{octet >> 4:X}" for octet in octets).rstrip("F")
    if any(n not in _NUMBER_NIBBLES for n in nibbles):
        raise PduError(f"bad digits in address: {octets.hex()}")
    return "".join(_NUMBER_DIGITS[_NUMBER_NIBBLES.index(n)] for n in nibbles)


def _encoding_of(dcs: int) -> Encoding:
    if dcs & 0xC0 == 0x00:
        alphabet = (dcs >> 2) & 0x03
    elif dcs & 0xF0 == 0xF0:
        alphabet = (dcs >> 2) & 0x01
    else:
        raise PduError(f"unsupported data coding scheme {dcs:#04x}")
    if alphabet == 0:
        return Encoding.GSM7
    if alphabet == 2:
        return Encoding.UCS2
    raise PduError(f"8-bit or reserved data coding scheme {dcs:#04x}")


def _decode_validity(cursor: _Cursor, vpf: int) -> int | None:
    if vpf == 0:
        return None
    if vpf == 2:
        return validity_minutes_of(cursor.byte())
    cursor.take(7)  # enhanced or absolute: not produced by us, skipped
    return None


def _decode_user_data(
    cursor: _Cursor, encoding: Encoding, has_header: bool
) -> tuple[str, Concat | None]:
    length = cursor.byte()
    data = cursor.rest()
    header = b""
    if has_header:
        if not data or data[0] + 1 > len(data):
            raise PduError("user data header longer than the user data")
        header = data[: data[0] + 1]
    concat = _concat_of(header[1:]) if header else None
    if encoding is Encoding.UCS2:
        return _decode_ucs2(data, length, len(header)), concat
    return _decode_gsm7(data, length, len(header)), concat


def _decode_ucs2(data: bytes, length: int, header_octets: int) -> str:
    if length != len(data) or (length - header_octets) % 2:
        raise PduError(f"UCS-2 user data length {length} does not match {len(data)} octets")
    try:
        return data[header_octets:].decode("utf-16-be")
    except UnicodeDecodeError as error:
        raise PduError(f"UCS-2 text is broken (split surrogate pair?): {error.reason}") from error


def _decode_gsm7(data: bytes, length: int, header_octets: int) -> str:
    if len(data) != math.ceil(length * 7 / 8):
        raise PduError(f"GSM-7 user data length {length} does not match {len(data)} octets")
    header_septets = math.ceil(header_octets * 8 / 7)
    if length < header_septets:
        raise PduError("user data length shorter than its header")
    septets = unpack_septets(data, length - header_septets, header_septets * 7)
    return gsm7_text(septets)


def gsm7_text(septets: bytes) -> str:
    """Characters of unpacked septets; an ESC at the very end is a split escape pair."""
    chars = []
    escaped = False
    for septet in septets:
        if escaped:
            chars.append(_EXTENSION_CHAR.get(septet, GSM7_BASIC[septet]))
            escaped = False
        elif septet == ESCAPE:
            escaped = True
        else:
            chars.append(GSM7_BASIC[septet])
    if escaped:
        raise PduError("GSM-7 text ends inside an escape pair")
    return "".join(chars)


def _concat_of(elements: bytes) -> Concat | None:
    """The concatenation element of a user data header (8- or 16-bit reference)."""
    decoders: dict[int, Callable[[bytes], Concat]] = {
        CONCAT_8BIT_IEI: lambda v: Concat(v[0], v[1], v[2]),
        CONCAT_16BIT_IEI: lambda v: Concat(int.from_bytes(v[:2], "big"), v[2], v[3]),
    }
    sizes = {CONCAT_8BIT_IEI: 3, CONCAT_16BIT_IEI: 4}
    cursor = _Cursor(elements)
    found = None
    while cursor.position < len(elements):
        iei, size = cursor.byte(), cursor.byte()
        value = cursor.take(size)
        if iei in decoders and size == sizes[iei]:
            found = decoders[iei](value)
    if found is not None and not 1 <= found.sequence <= found.total:
        raise PduError(f"part {found.sequence} of {found.total} is impossible")
    return found
