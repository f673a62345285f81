"""The broker password outside the command line (issue 12: inside --broker it shows in ps):
--password-file or $APPLIANCE_RECEIVER_PASSWORD, refused clearly and never echoed when wrong."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from broker import Broker

from receiver.errors import SettingsError
from receiver.settings import PASSWORD_ENV, parse_broker_url, with_password

SECRET = "s3cr3t:/@ pass"


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_the_password_comes_from_the_first_line_of_the_file(tmp_path: Path) -> None:
    file = write(tmp_path / "pw", f"{SECRET}\nsecond line\n".encode())
    broker = with_password(parse_broker_url("mqtts://rx@host"), file, {PASSWORD_ENV: "other"})
    assert (broker.username, broker.password) == ("rx", SECRET)
    assert SECRET not in broker.redacted()


def test_the_environment_is_used_when_neither_the_url_nor_a_file_has_one() -> None:
    broker = with_password(parse_broker_url("mqtts://rx@host"), None, {PASSWORD_ENV: SECRET})
    assert broker.password == SECRET
    url_wins = with_password(parse_broker_url("mqtts://rx:old@host"), None, {PASSWORD_ENV: "x"})
    assert url_wins.password == "old"
    assert with_password(parse_broker_url("mqtts://host"), None, {}).password is None


@pytest.mark.parametrize(
    ("url", "content", "words"),
    [
        ("mqtts://rx:inurl@host", SECRET.encode(), "in --broker and in --password-file"),
        ("mqtts://host", SECRET.encode(), "needs a user name"),
        ("mqtts://rx@host", b"", "the first line is empty"),
        ("mqtts://rx@host", b"\n" + SECRET.encode(), "the first line is empty"),
        ("mqtts://rx@host", b"\xff\xfe" + SECRET.encode(), "not UTF-8 text"),
        ("mqtts://rx@host", SECRET.encode() * 1000, "longer than 4096 bytes"),
        ("mqtts://rx@host", None, "cannot read it"),
    ],
)
def test_a_bad_password_file_is_refused_naming_the_file_not_its_content(
    tmp_path: Path, url: str, content: bytes | None, words: str
) -> None:
    file = tmp_path / "pw" if content is None else write(tmp_path / "pw", content)
    with pytest.raises(SettingsError, match=words) as raised:
        with_password(parse_broker_url(url), file, {})
    assert "s3cr3t" not in str(raised.value)
    assert str(file) in str(raised.value) or "--password-file" in str(raised.value)


def test_a_nul_in_the_password_file_path_is_refused_clearly() -> None:
    with pytest.raises(SettingsError, match="cannot read it"):
        with_password(parse_broker_url("mqtts://rx@host"), Path("pw\x00x"), {})


async def forget_session(broker: Broker, *extra: str, env: dict[str, str]) -> tuple[int, str]:
    url = f"{broker.scheme}://receiver@{broker.host}:{broker.port}"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "receiver", "forget-session", "--broker", url,
        "--ca", str(broker.ca_path), "--client-id", "rx-gone", *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**{k: v for k, v in os.environ.items() if k != PASSWORD_ENV}, **env},
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_the_command_connects_with_the_password_from_the_environment_or_a_file(
    broker: Broker, tmp_path: Path
) -> None:
    password = broker.credentials["receiver"].password

    code, out = await forget_session(broker, env={PASSWORD_ENV: password})
    assert (code, "session of rx-gone removed" in out) == (0, True)

    file = write(tmp_path / "pw", password.encode() + b"\n")
    code, out = await forget_session(broker, "--password-file", str(file), env={})
    assert (code, "session of rx-gone removed" in out) == (0, True)

    wrong = write(tmp_path / "wrong", b"not-the-password\n")
    code, out = await forget_session(broker, "--password-file", str(wrong), env={})
    assert code == 2 and "not-the-password" not in out and "Traceback" not in out
