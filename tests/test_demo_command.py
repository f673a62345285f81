"""`appliance demo` for someone trying it the first time: it runs without the workstation extras,
the page's URL starts every summary, the token is printed once and kept in the data directory,
and --reset deletes the demo's state (only that, and only when confirmed)."""

from __future__ import annotations

import json
import re
import signal
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from appliance.cli import main
from appliance.rig.demo import (
    DEMO_SIGNING_KEY,
    delete_demo_state,
    demo_models,
    demo_state,
)

DEADLINE_S = 60
HEADING = re.compile(r"^(http://127\.0\.0\.1:\d+/)  \(token in (\S+)\)\s+── demo-gw\s+(up|final)")
KEY_PAIR = {DEMO_SIGNING_KEY, DEMO_SIGNING_KEY + ".pub"}
WORKSTATION_ONLY = ("tensorflow", "matplotlib", "pandas", "psycopg", "hypothesis", "playwright")
"""Top modules of the train, eval, receiver and dev extras, which .venv-demo does not have."""
WITHOUT_WORKSTATION_MODULES = (
    f"import sys; sys.modules.update(dict.fromkeys({WORKSTATION_ONLY!r}));"  # import: ImportError
    "from appliance.cli import main; sys.exit(main(sys.argv[1:]))"
)


def ack_status(url: str, token: str) -> int:
    """An acknowledgement of an alert that does not exist: 401 without the right token, 404
    with it."""
    request = urllib.request.Request(
        url + "api/alerts/ack",
        data=json.dumps({"id": "no-such-alert", "by": "test"}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_every_summary_starts_with_the_page_and_the_token_is_kept(tmp_path: Path) -> None:
    """Run as from .venv-demo: the workstation extras' modules cannot be imported."""
    command = [sys.executable, "-c", WITHOUT_WORKSTATION_MODULES, "demo"]
    command += ["--data-dir", str(tmp_path), "--summary-every", "0.5", "--http", "127.0.0.1:0"]
    command += ["--seconds", str(DEADLINE_S)]
    headings: list[re.Match[str]] = []
    tokens: list[str] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as p:
        assert p.stdout is not None
        for line in p.stdout:
            if printed := re.match(r"token for actions: (\S+)", line):
                tokens.append(printed.group(1))
            if heading := HEADING.match(line):
                headings.append(heading)
            if len(headings) == 2:
                break
        url, token_file = headings[0].group(1, 2)
        with urllib.request.urlopen(url, timeout=10) as page:
            assert page.status == 200
        assert ack_status(url, "not-the-token-at-all") == 401
        assert ack_status(url, tokens[0]) == 404
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=DEADLINE_S)

    assert p.returncode == 0, err
    assert len(tokens) == 1, "the token is printed once"
    assert headings[1].group(1, 2) == (url, token_file)
    final = [m for line in out.splitlines() if (m := HEADING.match(line))]
    assert final and final[-1].group(3) == "final" and final[-1].group(1) == url
    assert Path(token_file) == tmp_path / "http-token"
    assert Path(token_file).read_text().strip() == tokens[0]
    assert stat.S_IMODE(Path(token_file).stat().st_mode) == 0o600

    delete_demo_state(demo_state(tmp_path))
    assert {path.name for path in tmp_path.iterdir()} == KEY_PAIR, "reset leaves only the key"


def demo_dir_with_state(tmp_path: Path) -> Path:
    data_dir = tmp_path / "demo-data"
    demo_models(data_dir)  # the key pair, as the demo makes it on first run
    (data_dir / "appliance.db").write_bytes(b"readings")
    (data_dir / "model-inbox").mkdir()
    (data_dir / "model-inbox" / "pump-1.tar").write_bytes(b"bundle")
    (data_dir / "http-token").write_text("old-token\n")
    (data_dir / "notes.txt").write_text("the user's own file")
    return data_dir


def test_reset_deletes_only_after_yes_and_only_the_demo_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = demo_dir_with_state(tmp_path)
    before = sorted(p.name for p in data_dir.iterdir())
    demo = ["demo", "--data-dir", str(data_dir), "--http", "127.0.0.1:0", "--reset"]

    assert main(demo) == 2
    err = capsys.readouterr().err
    assert "appliance.db, model-inbox, http-token" in err and "--yes" in err
    assert sorted(p.name for p in data_dir.iterdir()) == before

    assert main([*demo, "--yes", "--seconds", "0", "--summary-every", "60"]) == 0
    out = capsys.readouterr().out
    assert f"reset: deleted in {data_dir}: appliance.db, model-inbox, http-token" in out
    assert (data_dir / "notes.txt").read_text() == "the user's own file"
    assert not (data_dir / "model-inbox" / "pump-1.tar").exists()
    assert (data_dir / "http-token").read_text() != "old-token\n", "a new token for the new run"


def test_reset_refuses_a_directory_the_demo_did_not_make(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "appliance.db").write_bytes(b"someone's gateway store")
    demo = ["demo", "--data-dir", str(tmp_path), "--reset", "--yes"]

    assert main(demo) == 2

    assert "not a demo data directory; nothing deleted" in capsys.readouterr().err
    assert (tmp_path / "appliance.db").read_bytes() == b"someone's gateway store"


def test_yes_without_reset_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--yes"]) == 2
    assert "--yes confirms --reset" in capsys.readouterr().err
