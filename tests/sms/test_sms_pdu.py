"""SMS-SUBMIT encoding and decoding (pure): round trips, part boundaries, known vectors."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from appliance.sms.errors import MessageRejected, PduError
from appliance.sms.pdu import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    PART_GSM7_SEPTETS,
    PART_UCS2_OCTETS,
    SINGLE_GSM7_SEPTETS,
    SINGLE_UCS2_OCTETS,
    Concat,
    Encoding,
    Pdu,
    Submit,
    count_parts,
    decode_submit,
    encode_address,
    encode_sms,
    gsm7_septets,
    pack_septets,
    relative_validity,
    validity_minutes_of,
)

NUMBER = "+491701234567"
GSM_CHARS = [c for c in GSM7_BASIC if c != "\x1b"] + list(GSM7_EXTENSION)
EMOJI = "😀🚨🔧🏭👍🏽"


def decode_all(pdus: list[Pdu]) -> list[Submit]:
    return [decode_submit(pdu.hex, pdu.tpdu_length) for pdu in pdus]


def round_trip(text: str, reference: int = 42) -> str:
    return "".join(part.text for part in decode_all(encode_sms(NUMBER, text, reference)))


def part_units(part: Submit) -> int:
    """Septets (GSM-7) or UTF-16 octets (UCS-2) of one part's text."""
    if part.encoding is Encoding.UCS2:
        return len(part.text.encode("utf-16-be"))
    septets = gsm7_septets(part.text)
    assert septets is not None
    return sum(len(unit) for unit in septets)


def next_unit(part: Submit) -> int:
    """Size of the first character of a part (what did not fit into the previous one)."""
    first = part.text[:1]
    if part.encoding is Encoding.UCS2:
        return len(first.encode("utf-16-be"))
    septets = gsm7_septets(first)
    assert septets is not None
    return sum(len(unit) for unit in septets)


def check_parts(text: str, reference: int = 42) -> list[Submit]:
    """Every invariant of a split: text, headers, size limits, and parts filled greedily."""
    parts = decode_all(encode_sms(NUMBER, text, reference))
    assert "".join(part.text for part in parts) == text
    assert all(part.number == NUMBER for part in parts)
    assert len({part.encoding for part in parts}) == 1
    if len(parts) == 1:
        assert parts[0].concat is None
        limit = SINGLE_UCS2_OCTETS if parts[0].encoding is Encoding.UCS2 else SINGLE_GSM7_SEPTETS
        assert part_units(parts[0]) <= limit
        return parts
    limit = PART_UCS2_OCTETS if parts[0].encoding is Encoding.UCS2 else PART_GSM7_SEPTETS
    for sequence, part in enumerate(parts, start=1):
        assert part.concat == Concat(reference, len(parts), sequence)
        assert part_units(part) <= limit
    for part, following in itertools.pairwise(parts):
        assert part_units(part) + next_unit(following) > limit  # nothing fitted was held back
    return parts


# --- properties -----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=700), st.integers(0, 255))
@example("", 0)
@example("€" * 77, 1)
@example("a" * 152 + "€", 2)
@example("ж" * 66 + "😀" + "ж", 3)
def test_any_text_round_trips(text: str, reference: int) -> None:
    check_parts(text, reference)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(GSM_CHARS), max_size=800))
def test_gsm7_text_round_trips_as_gsm7(text: str) -> None:
    parts = check_parts(text)
    assert all(part.encoding is Encoding.GSM7 for part in parts)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from([*"ab€[]{}", *EMOJI, "ж"]), max_size=500))
def test_mixed_text_with_escapes_and_emoji_round_trips(text: str) -> None:
    check_parts(text)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**15), st.booleans())
def test_numbers_round_trip(digits: int, international: bool) -> None:
    number = ("+" if international else "") + str(digits)
    [part] = decode_all(encode_sms(number, "x", 0))
    assert part.number == number


# --- boundaries -----------------------------------------------------------------------------


def test_160_gsm7_characters_are_one_sms_and_161_are_two() -> None:
    assert [len(p.text) for p in check_parts("x" * 160)] == [160]
    assert [len(p.text) for p in check_parts("x" * 161)] == [153, 8]


def test_escape_pair_never_split_at_a_part_boundary() -> None:
    # € would take septets 153 and 154: the first part stops at 152
    parts = check_parts("a" * 152 + "€" + "b" * 20)
    assert [p.text for p in parts] == ["a" * 152, "€" + "b" * 20]
    # € ending exactly on septet 153 stays in the first part
    parts = check_parts("a" * 151 + "€" + "b" * 20)
    assert [p.text for p in parts] == ["a" * 151 + "€", "b" * 20]


@pytest.mark.parametrize("char", list(GSM7_EXTENSION))
def test_every_extension_character_at_the_boundary(char: str) -> None:
    parts = check_parts("-" * 152 + char + "+" * 10)
    assert parts[0].text == "-" * 152
    assert parts[1].text.startswith(char)


def test_escapes_count_two_septets_for_the_single_part_limit() -> None:
    assert len(check_parts("€" * 80)) == 1  # 160 septets
    parts = check_parts("€" * 80 + "a")  # 161 septets: 76 pairs (152 septets) per part
    assert [p.text for p in parts] == ["€" * 76, "€" * 4 + "a"]


def test_ucs2_limits_are_70_and_67_code_units() -> None:
    assert [len(p.text) for p in check_parts("ж" * 70)] == [70]
    assert [len(p.text) for p in check_parts("ж" * 71)] == [67, 4]


def test_surrogate_pair_never_split_at_a_part_boundary() -> None:
    # the emoji would take code units 67 and 68: the first part stops at 66
    parts = check_parts("ж" * 66 + "😀" + "ж" * 10)
    assert [p.text for p in parts] == ["ж" * 66, "😀" + "ж" * 10]
    parts = check_parts("ж" * 65 + "😀" + "ж" * 10)  # ends exactly on unit 67
    assert [p.text for p in parts] == ["ж" * 65 + "😀", "ж" * 10]
    parts = check_parts("😀" * 40)
    assert [p.text for p in parts] == ["😀" * 33, "😀" * 7]


def test_400_character_messages() -> None:
    gsm = ("Pump P-101 bearing vibration 7.9 mm/s > 4.5 mm/s [ISO 10816] {zone D} € ~ " * 6)[:400]
    assert len(check_parts(gsm)) == math.ceil(len(gsm) / 153) == 3
    ucs2 = ("Насос P-101: вибрация 7.9 мм/с 🚨 " * 13)[:400]
    assert len(ucs2) == 400
    parts = check_parts(ucs2)
    assert len(parts) == count_parts(ucs2) == 7  # 402 code units (the emoji) in parts of 67
    assert round_trip(gsm) == gsm and round_trip(ucs2) == ucs2


def test_any_character_outside_gsm7_switches_the_whole_message_to_ucs2() -> None:
    [part] = check_parts("Temperature 81 °C")  # ° is not GSM-7
    assert part.encoding is Encoding.UCS2
    [part] = check_parts("Temperature 81 C, Ä ö ü ß §")
    assert part.encoding is Encoding.GSM7


def test_too_many_parts_and_bad_input_are_refused() -> None:
    with pytest.raises(PduError, match="parts"):
        encode_sms(NUMBER, "x" * (153 * 255 + 1), 0)
    assert len(encode_sms(NUMBER, "x" * (153 * 255), 0)) == 255
    with pytest.raises(PduError, match="reference"):
        encode_sms(NUMBER, "x", 256)
    with pytest.raises(PduError, match="Unicode"):
        encode_sms(NUMBER, "lone \ud83d surrogate", 0)
    with pytest.raises(MessageRejected):  # give up on the message, do not retry
        encode_sms("0800-CALL-ME", "x", 0)


# --- known bytes ----------------------------------------------------------------------------


def test_known_vector_hellohello() -> None:
    """The classic SMS-SUBMIT example (GSM 03.40 tutorials): relative validity of 4 days."""
    [pdu] = encode_sms("+46708251358", "hellohello", 0, validity_minutes=4 * 24 * 60)
    assert pdu == Pdu("0011000B916407281553F80000AA0AE8329BFD4697D9EC37", 23)


def bits_of(septets: list[int], fill: int) -> bytes:
    """An independent packer: a bit string, least significant bit of each septet first."""
    bits = "0" * fill + "".join(format(s, "07b")[::-1] for s in septets)
    bits += "0" * (-len(bits) % 8)
    return bytes(int(bits[i : i + 8][::-1], 2) for i in range(0, len(bits), 8))


def test_concatenated_gsm7_has_header_and_one_fill_bit() -> None:
    text = "A" * 160 + "{"
    first, second = encode_sms("+4917", text, 0xCC, validity_minutes=None)
    tpdu = bytes.fromhex(first.hex)[1:]
    assert tpdu[0] == 0x41  # SUBMIT, UDHI, no validity period
    assert tpdu[2:6] == bytes([4, 0x91, 0x94, 0x71])
    udl, ud = tpdu[8], tpdu[9:]
    assert udl == 7 + 153
    assert ud[:6] == bytes([5, 0, 3, 0xCC, 2, 1])
    # the header is 48 bits; one fill bit puts the text on the septet boundary at bit 49
    assert ud[6:] == bits_of([0x41] * 153, fill=1)
    tpdu2 = bytes.fromhex(second.hex)[1:]
    assert tpdu2[8] == 7 + 9
    assert tpdu2[9:15] == bytes([5, 0, 3, 0xCC, 2, 2])
    assert tpdu2[15:] == bits_of([0x41] * 7 + [0x1B, 0x28], fill=1)


def test_concatenated_ucs2_header_and_length() -> None:
    first, _ = encode_sms("+4917", "😀" * 40, 7, validity_minutes=None)
    tpdu = bytes.fromhex(first.hex)[1:]
    assert tpdu[7] == 0x08  # DCS UCS-2
    assert tpdu[8] == 6 + 33 * 4
    assert tpdu[9:15] == bytes([5, 0, 3, 7, 2, 1])
    assert tpdu[15:19] == "😀".encode("utf-16-be")
    assert first.tpdu_length == len(tpdu)


def test_pack_septets_matches_bit_string_packer() -> None:
    septets = [0x68, 0x65, 0x6C, 0x6C, 0x6F, 0x1B, 0x65, 0x7F, 0x00]
    for fill in range(7):
        assert pack_septets(bytes(septets), fill) == bits_of(septets, fill)


def test_address_formats() -> None:
    assert encode_address("+46 70-825 13.58") == bytes.fromhex("0B916407281553F8")
    assert encode_address("01701234567") == bytes.fromhex("0B811007214365F7")
    assert encode_address("*100#") == bytes.fromhex("05811A00FB")
    for bad in ("", "+", "+49 170 CALL", "+*100#", "1" * 21):
        with pytest.raises(PduError):
            encode_address(bad)


def test_validity_period_coding() -> None:
    assert relative_validity(5) == 0
    assert relative_validity(12 * 60) == 143
    assert relative_validity(24 * 60) == 167
    assert relative_validity(4 * 24 * 60) == 0xAA
    assert relative_validity(10**9) == 255
    minutes = [validity_minutes_of(vp) for vp in range(256)]
    assert minutes == sorted(minutes) and len(set(minutes)) == 256


# --- the decoder is strict where the encoder promises something ------------------------------


def hand_made(ud_hex: str, *, udl: int, dcs: int = 0, first: int = 0x01) -> str:
    return f"00{first:02X}000B916407281553F800{dcs:02X}{udl:02X}{ud_hex}"


def test_decoder_refuses_broken_pdus() -> None:
    good = encode_sms(NUMBER, "hello", 0)[0]
    with pytest.raises(PduError, match="AT\\+CMGS said"):
        decode_submit(good.hex, good.tpdu_length + 1)
    with pytest.raises(PduError, match="not hex"):
        decode_submit("00zz")
    with pytest.raises(PduError, match="ends early"):
        decode_submit(good.hex[:12])
    with pytest.raises(PduError, match="does not match"):
        decode_submit(good.hex[:-4])
    with pytest.raises(PduError, match="not an SMS-SUBMIT"):
        decode_submit(hand_made("E8329BFD06", udl=5, first=0x00))
    with pytest.raises(PduError, match="escape"):
        decode_submit(hand_made(pack_septets(bytes([0x41, 0x1B])).hex(), udl=2))
    with pytest.raises(PduError, match="surrogate"):
        decode_submit(hand_made("D83D", udl=2, dcs=0x08))
    with pytest.raises(PduError, match="8-bit"):
        decode_submit(hand_made("41", udl=1, dcs=0x04))


def test_decoder_reads_16_bit_references_and_absent_validity() -> None:
    ud = bytes([6, 0x08, 4, 0x12, 0x34, 2, 1]) + "hi".encode("utf-16-be")
    part = decode_submit(hand_made(ud.hex(), udl=len(ud), dcs=0x08, first=0x41))
    assert part.concat == Concat(0x1234, 2, 1)
    assert part.text == "hi" and part.validity_minutes is None
