"""The AT response parser (pure): fed one byte at a time, with echo, URCs anywhere and noise."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.sms.at import (
    MAX_LINE_BYTES,
    AtParser,
    Echo,
    Event,
    Final,
    Info,
    Prompt,
    Stray,
    Urc,
    error_for,
    message_reference,
    operator_name,
    parse_final,
    registration_status,
    response_prefix,
    signal_quality,
    split_fields,
)
from appliance.sms.errors import (
    CommandRejected,
    MessageRejected,
    ModemError,
    ModemRefused,
    ModemUnusable,
)
from appliance.sms.result_codes import CME_ERRORS, CMS_ERRORS, Disposition, ResultKind

OK = Final(ResultKind.OK, None, "OK")


def feed_bytewise(parser: AtParser, data: bytes) -> list[Event]:
    events: list[Event] = []
    for byte in data:
        events += parser.feed(bytes([byte]))
    return events


def conversation(command: str, reply: bytes, data: str | None = None) -> list[Event]:
    parser = AtParser()
    parser.begin(command, data)
    events = feed_bytewise(parser, reply)
    assert events == _whole(command, reply, data), "byte-wise and whole feeds disagree"
    return events


def _whole(command: str, reply: bytes, data: str | None) -> list[Event]:
    parser = AtParser()
    parser.begin(command, data)
    return parser.feed(reply)


def urc(line: str) -> Urc:
    name, _, value = line.partition(":") if line.startswith("+") else (line, "", "")
    return Urc(name, value.strip(), line)


def test_send_with_echo_and_urcs_between_prompt_and_result() -> None:
    reply = (
        b"AT+CMGS=23\r\r\n> "
        b'\r\n+CMTI: "SM",3\r\n'
        b"0011000B916407281553F80000AA0AE8329BFD4697D9EC37\x1a"
        b"\r\n+CREG: 1\r\n\r\nRING\r\n"
        b"\r\n+CMGS: 12\r\n"
        b"\r\n+CPIN: READY\r\n"
        b"\r\nOK\r\n"
    )
    data = "0011000B916407281553F80000AA0AE8329BFD4697D9EC37"
    assert conversation("AT+CMGS=23", reply, data) == [
        Echo("AT+CMGS=23"),
        Prompt(),
        urc('+CMTI: "SM",3'),
        Echo(data),
        urc("+CREG: 1"),
        urc("RING"),
        Info("+CMGS: 12"),
        urc("+CPIN: READY"),
        OK,
    ]


def test_urc_that_looks_like_the_answer_is_told_apart_by_shape() -> None:
    events = conversation(
        "AT+CREG?", b"\r\n+CREG: 2\r\n\r\n+CREG: 1,1\r\n\r\n+CREG: 1\r\n\r\nOK\r\n"
    )
    assert events == [urc("+CREG: 2"), Info("+CREG: 1,1"), urc("+CREG: 1"), OK]


def test_late_cpin_ready_is_a_urc_unless_cpin_is_asked() -> None:
    assert conversation("AT+CMEE=1", b"\r\n+CPIN: READY\r\n\r\nOK\r\n") == [
        urc("+CPIN: READY"),
        OK,
    ]
    assert conversation("AT+CPIN?", b"\r\n+CPIN: READY\r\n\r\nOK\r\n") == [
        Info("+CPIN: READY"),
        OK,
    ]


def test_boot_urcs_and_noise_with_nothing_pending() -> None:
    parser = AtParser()
    events = feed_bytewise(
        parser, b"\x00\xff\xfe\r\n\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\nSMS Ready\r\n^SYSSTART\r\n"
    )
    assert [e.name for e in events if isinstance(e, Urc)] == [
        "\ufffd\ufffd",
        "RDY",
        "+CFUN",
        "SMS Ready",
        "^SYSSTART",
    ]


def test_info_lines_without_prefix_belong_to_the_command() -> None:
    assert conversation("ATI", b"ATI\r\r\nSIM800 R14.18\r\n\r\nRING\r\n\r\nOK\r\n") == [
        Echo("ATI"),
        Info("SIM800 R14.18"),
        urc("RING"),
        OK,
    ]


def test_echo_stops_mattering_after_ate0() -> None:
    parser = AtParser()
    parser.begin("ATE0")
    assert parser.feed(b"ATE0\r\r\nOK\r\n") == [Echo("ATE0"), OK]
    parser.begin("AT+CSQ")
    assert parser.feed(b"\r\n+CSQ: 18,99\r\n\r\nOK\r\n") == [Info("+CSQ: 18,99"), OK]


def test_result_with_nothing_pending_is_stray() -> None:
    parser = AtParser()
    parser.begin("AT")
    parser.abandon()
    assert parser.feed(b"\r\nOK\r\n") == [Stray("OK")]
    assert parser.pending is None


def test_message_urc_with_pdu_line() -> None:
    parser = AtParser()
    parser.begin("AT+CSQ")
    events = feed_bytewise(
        parser, b"\r\n+CMT: ,23\r\n07911326040000F0\r\n\r\n+CSQ: 5,0\r\n\r\nOK\r\n"
    )
    assert events == [
        Urc("+CMT", ",23", "+CMT: ,23", data="07911326040000F0"),
        Info("+CSQ: 5,0"),
        OK,
    ]


def test_prompt_split_across_reads_and_a_runaway_line() -> None:
    parser = AtParser()
    parser.begin("AT+CMGS=9", "00")
    assert parser.feed(b"\r\n>") == []
    assert parser.feed(b" ") == [Prompt()]
    noise = b"x" * (MAX_LINE_BYTES + 10)
    events = parser.feed(noise)
    assert len(events) == 1 and isinstance(events[0], Info)


MODEM_WORDS = [
    b"\r\n", b"\r", b"\n", b"> ", b"OK", b"ERROR", b"+CMS ERROR: 500", b"+CME ERROR: 14",
    b"+CMT: ,24", b"+CMTI: \"SM\",3", b"+CREG: 0,1", b"+CREG: 5", b"+CMGS: 7", b"+CMGF: 1",
    b"RDY", b"AT+CMGS=20", b"\x1a", b"\x1b", b"\xff\x00", b",\"", b":",
]  # fmt: skip
noise = st.lists(st.sampled_from(MODEM_WORDS) | st.binary(max_size=20), max_size=30).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(noise, st.sampled_from(["AT", "AT+CMGS=20", "AT+CREG?", "AT+CMGF?"]))
def test_after_any_noise_the_next_command_still_gets_its_answer(data: bytes, command: str) -> None:
    """Whatever the modem says, the parser hands out typed events, at most one result code for
    the command in flight (later ones are Stray), and its state is intact: once the line ends,
    the next command's OK is recognised as that command's answer."""
    parser = AtParser()
    parser.begin(command, "00")
    events = parser.feed(data) + parser.feed(b"\r\n")
    assert all(isinstance(e, Echo | Info | Prompt | Final | Urc | Stray) for e in events)
    assert sum(isinstance(e, Final) for e in events) <= 1
    assert (parser.pending is None) == any(isinstance(e, Final) for e in events)
    parser.begin("AT")
    assert parser.feed(b"\r\nOK\r\n") == [OK]
    assert parser.pending is None


def test_a_urc_cut_off_before_its_data_line_does_not_swallow_the_answer() -> None:
    parser = AtParser()
    parser.begin("AT+CSQ")
    assert parser.feed(b"\r\n+CMT: ,24\r\n\r\nOK\r\n") == [OK]


# --- result codes ---------------------------------------------------------------------------


def test_final_result_codes_numeric_and_verbose() -> None:
    assert parse_final("+CME ERROR: 14") == Final(ResultKind.CME, 14, "+CME ERROR: 14")
    assert parse_final("+CME ERROR: SIM busy") == Final(ResultKind.CME, 14, "+CME ERROR: SIM busy")
    assert parse_final("+CMS ERROR: 500") == Final(ResultKind.CMS, 500, "+CMS ERROR: 500")
    assert parse_final("+CMS ERROR: SMSC address unknown") is not None
    assert parse_final("+CMS ERROR: SMSC address unknown").code == 330  # type: ignore[union-attr]
    assert parse_final("+CME ERROR: something odd").code is None  # type: ignore[union-attr]
    assert parse_final("ERROR") == Final(ResultKind.ERROR, None, "ERROR")
    assert parse_final("+CMGS: 3") is None


TRANSIENT = [("CMS", c) for c in (38, 41, 42, 47, 331, 332, 500, 512, 515, 530)] + [
    ("CME", 14),
    ("CME", 515),
    ("ERROR", None),
]
GIVE_UP_MESSAGE = [("CMS", c) for c in (1, 21, 28, 29, 96, 304, 305)]
GIVE_UP_MODEM = [("CMS", c) for c in (310, 311, 316, 330)] + [("CME", c) for c in (10, 11, 16)]


def final_of(kind: str, code: int | None) -> Final:
    line = "ERROR" if kind == "ERROR" else f"+{kind} ERROR: {code}"
    final = parse_final(line)
    assert final is not None
    return final


@pytest.mark.parametrize(("kind", "code"), TRANSIENT)
def test_transient_codes_retry(kind: str, code: int | None) -> None:
    final = final_of(kind, code)
    assert final.disposition is Disposition.RETRY
    error = error_for("AT+CMGS=20", final)
    assert type(error) is ModemError and error.retry and error.code == code


@pytest.mark.parametrize(("kind", "code"), GIVE_UP_MESSAGE)
def test_message_errors_give_up_on_the_message(kind: str, code: int) -> None:
    error = error_for("AT+CMGS=20", final_of(kind, code))
    assert isinstance(error, CommandRejected) and isinstance(error, MessageRejected)
    assert not error.retry


@pytest.mark.parametrize(("kind", "code"), GIVE_UP_MODEM)
def test_sim_and_subscription_errors_need_a_human(kind: str, code: int) -> None:
    error = error_for("AT+CMGS=20", final_of(kind, code))
    assert isinstance(error, ModemRefused) and isinstance(error, ModemUnusable)
    assert not isinstance(error, MessageRejected) and not error.retry


def test_tables_have_names_for_their_codes() -> None:
    assert CMS_ERRORS[21].name == "short message transfer rejected"
    assert CME_ERRORS[14].name == "SIM busy"
    error = error_for("AT+CMGS=20", final_of("CMS", 42))
    assert "CMS 42 (congestion)" in str(error)


# --- values ---------------------------------------------------------------------------------


def test_value_helpers() -> None:
    assert split_fields('0,0,"Tele, Mobile",7') == ["0", "0", "Tele, Mobile", "7"]
    assert split_fields("") == []
    assert registration_status("1,5", solicited=True) == 5
    assert registration_status('1,"00C3","1234"', solicited=False) == 1
    assert signal_quality("18,99") == (18, 99)
    assert signal_quality("x") is None
    assert operator_name('0,0,"Vodafone.de",7') == "Vodafone.de"
    assert operator_name("0") is None
    assert message_reference("12") == 12
    assert response_prefix("AT+CREG?") == "+CREG"
    assert response_prefix('AT+CPIN="1234"') == "+CPIN"
    assert response_prefix("AT+CSQ") == "+CSQ"
    assert response_prefix("ATE0") is None
