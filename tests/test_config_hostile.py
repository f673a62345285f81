"""Hostile and careless configs (issue 12): check-config answers every one with one line naming
the key, never a traceback and never a secret, and refuses what `run` would refuse at start."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from config_helpers import minimal_config

from appliance.cli import main

SECRET = "hunter2-secret"


def check_config(
    tmp_path: Path, text: str | bytes, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    """Run `appliance check-config` on the text; (exit status, stderr)."""
    path = tmp_path / "site.toml"
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    status = main(["check-config", str(path)])
    return status, capsys.readouterr().err


def refusal(tmp_path: Path, text: str | bytes, capsys: pytest.CaptureFixture[str]) -> str:
    """The one line check-config prints for a refused config (a traceback fails the test)."""
    status, err = check_config(tmp_path, text, capsys)
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {tmp_path / 'site.toml'}: "), err
    return lines[0]


def test_the_minimal_config_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check_config(tmp_path, minimal_config(tmp_path), capsys)[0] == 0


def test_non_utf8_bytes_name_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = minimal_config(tmp_path).encode().replace(b'id = "gw-1"', b'id = "gw-\xff"')
    assert "line 3: not UTF-8 text (byte 0xff)" in refusal(tmp_path, text, capsys)


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("[http]\nbad = " + "[" * 100_000 + "]" * 100_000, "line 23: http.bad: "),
        ("[http]\nbad = " + "{a = " * 5_000 + "1" + "}" * 5_000, "http.bad: "),
        ("[http]\nbad = ['[[[[[[', \"]]]\", " + "[" * 40 + "]" * 40 + "]", "http.bad: "),
    ],
    ids=["arrays", "inline-tables", "after-strings"],
)
def test_deep_nesting_names_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, key: str
) -> None:
    line = refusal(tmp_path, minimal_config(tmp_path, extra), capsys)
    assert key in line and "nested more than 32 levels deep" in line


def test_brackets_inside_strings_and_comments_do_not_count_as_nesting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deep = "[" * 50
    text = minimal_config(tmp_path).replace(
        'unit = "g"', f'unit = "g" # {deep}\ndescription = """{deep}"""'
    )
    line = refusal(tmp_path, text, capsys)  # description is not a channel key: the schema says
    assert "assets[0].channels[0].description: unknown key" in line


SMS = '[sms]\nemulate = true\nrecipients = ["+491701234567"]\n'
TLS_UPLINK = '[uplink]\nbroker = "mqtts://broker.example.com"\nusername = "gw-1"\n'


@pytest.mark.parametrize(
    ("extra", "store", "expected"),
    [
        (SMS + 'timezone = "America"', None, "sms.timezone: unknown time zone"),
        (SMS + 'timezone = "zone.tab"', None, "sms.timezone: unknown time zone"),
        (SMS + 'pin_file = "/etc/pin\\u0000"', None, "sms.pin_file: must not contain control"),
        (
            TLS_UPLINK + 'password_file = "/etc/pw\\u0000x"',
            None,
            "uplink.password_file: must not contain control characters",
        ),
        (
            TLS_UPLINK + 'password = "x-very-secret"\nca_file = "/etc/ca\\u0000.crt"',
            None,
            "uplink.ca_file: must not contain control characters",
        ),
        ("", '"/var/lib/appliance/a\\u0000.db"', "store.path: must not contain control"),
        ("", '" /var/lib/appliance.db"', "store.path: has leading or trailing spaces"),
        ('[http]\ntoken_file = "/nonexistent/http-token"', None, "http.token_file: cannot read"),
        ('[http]\nhost = "no such host"', None, "http.host: must be an IP address"),
        ('[http]\ntoken_file = "/dev/zero"', None, "http.token_file: /dev/zero is larger than"),
        (SMS + 'pin_file = "/dev/zero"', None, "sms.pin_file: /dev/zero is larger than"),
        (
            TLS_UPLINK + 'password_file = "/dev/zero"',
            None,
            "uplink.password_file: /dev/zero is larger than",
        ),
        (
            '[models]\npublic_key_files = ["/dev/zero"]',
            None,
            "models.public_key_files: /dev/zero is larger than",
        ),
        ("", '"/tmp"', "store.path: /tmp is a directory"),
    ],
)
def test_paths_and_zones_are_refused_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, store: str | None, expected: str
) -> None:
    assert expected in refusal(tmp_path, minimal_config(tmp_path, extra, store=store), capsys)


def test_a_nan_valid_range_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = minimal_config(tmp_path).replace("valid_range = [-16, 16]", "valid_range = [nan, 2.0]")
    assert "assets[0].channels[0].valid_range[0]: " in refusal(tmp_path, text, capsys)
    text = minimal_config(tmp_path, "[features]\nwindow_s = inf")
    assert "features.window_s: " in refusal(tmp_path, text, capsys)


@pytest.mark.parametrize(
    ("features", "reason"),
    [
        ("window_s = 1580031\nstride_s = 1", "features.window_s: "),  # found by hypothesis
        ("window_s = 3601", "features.window_s: Input should be less than or equal to 3600"),
        ("window_s = 3600", "Welch segments"),  # 3.6 M samples, 28,125 segments at 1 kHz
        ("window_s = 600\nnperseg = 8\nnoverlap = 7", "Welch segments"),
    ],
)
def test_a_window_too_big_to_hold_is_refused_before_anything_is_allocated(
    features: str, reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = minimal_config(tmp_path, f"[features]\n{features}")
    assert reason in refusal(tmp_path, text, capsys)


def test_a_window_of_more_samples_than_the_cap_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = minimal_config(tmp_path, "[features]\nwindow_s = 60\nnperseg = 4096")
    text = text.replace("rate_hz = 1000", "rate_hz = 100000")  # 6 M samples
    assert "more than 4194304" in refusal(tmp_path, text, capsys)


def test_a_relative_serial_port_with_a_trailing_space_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = minimal_config(tmp_path).replace(
        "[serial.emulate]\nchannels = 1", 'port = "dev/ttyACM0 "'
    )
    assert "serial[0].port: has leading or trailing spaces" in refusal(tmp_path, text, capsys)
    text = minimal_config(tmp_path).replace(
        "[serial.emulate]\nchannels = 1", 'port = "dev/ttyACM0"'
    )
    assert "serial[0].port: must be an absolute device path" in refusal(tmp_path, text, capsys)


def test_a_binary_public_key_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    binary = tmp_path / "key.bin"
    binary.write_bytes(bytes(range(256)))
    text = minimal_config(tmp_path, f'[models]\npublic_key_files = ["{binary}"]')
    assert f"models.public_key_files: {binary} is not UTF-8 text" in refusal(tmp_path, text, capsys)


@pytest.mark.parametrize(
    "extra",
    [
        f'[http]\ntoken = "{SECRET}"',  # too short
        f'[http]\ntoken = "{SECRET} {SECRET}"',  # a space
        f'[http]\ntoken = ["{SECRET}"]',
        f'[sms]\nemulate = true\nrecipients = ["+491701234567"]\npin = "{SECRET}"',
        f'[uplink]\nbroker = "mqtts://user:{SECRET}@host:99999"\n',
        f'[uplink]\nbroker = "ftp://user:{SECRET}@host"\n',
    ],
)
def test_a_secret_is_never_echoed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str
) -> None:
    line = refusal(tmp_path, minimal_config(tmp_path, extra), capsys)
    assert SECRET not in line
    assert "token" in line or "pin" in line or "broker" in line


def test_a_token_file_with_a_short_token_is_refused_without_showing_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token_file = tmp_path / "http-token"
    token_file.write_text(SECRET + "\n")
    line = refusal(
        tmp_path, minimal_config(tmp_path, f'[http]\ntoken_file = "{token_file}"'), capsys
    )
    assert "http.token_file: " in line and SECRET not in line
    token_file.write_text(SECRET * 2 + "\n")
    assert (
        check_config(
            tmp_path, minimal_config(tmp_path, f'[http]\ntoken_file = "{token_file}"'), capsys
        )[0]
        == 0
    )


def test_run_refuses_what_check_config_refuses_before_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "site.toml"
    path.write_text(minimal_config(tmp_path, '[http]\ntoken_file = "/nonexistent/http-token"'))
    assert main(["run", "--config", str(path), "--seconds", "1"]) == 2
    assert "http.token_file: cannot read /nonexistent/http-token" in capsys.readouterr().err
    assert not (tmp_path / "store.db").exists()  # refused before anything was opened


def test_a_busy_http_port_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        path = tmp_path / "site.toml"
        path.write_text(minimal_config(tmp_path, f"[http]\nport = {port}"))
        assert main(["run", "--config", str(path), "--seconds", "30"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: http.port: cannot listen on 127.0.0.1:{port}: "), err


def test_an_address_this_host_does_not_have_is_one_line_naming_http_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "site.toml"
    path.write_text(minimal_config(tmp_path, '[http]\nhost = "192.0.2.1"\nport = 0'))
    assert main(["run", "--config", str(path), "--seconds", "30"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: http.host: cannot listen on 192.0.2.1:0: "), last


def test_a_bad_demo_http_host_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--http", "bad host:8080", "--seconds", "1"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --http: must be an IP address (0.0.0.0: every interface) or a host name "
        "(got 'bad host')"
    )


@pytest.mark.parametrize("key", ["directory", "inbox"])
def test_an_unusable_models_directory_is_one_line_naming_the_key(
    key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from appliance.ota.signing import public_key_text

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    public = public_key_text(Ed25519PrivateKey.generate().public_key())
    models = f'[models]\npublic_keys = ["{public}"]\n{key} = "{blocker / "models"}"'
    path = tmp_path / "site.toml"
    path.write_text(minimal_config(tmp_path, models))
    assert main(["run", "--config", str(path), "--seconds", "30"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: models.{key}: {blocker / 'models'} cannot be used: "), err
