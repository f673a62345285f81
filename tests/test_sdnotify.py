"""systemd notifications over a real unix datagram socket, as systemd's NOTIFY_SOCKET gets them."""

import asyncio
import socket
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from waiting import wait_until

from appliance.rig import run_appliance
from appliance.rig.demo import demo_config
from appliance.sdnotify import SystemdNotifier
from appliance.status import StatusBoard


def notify_socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    return sock


def received(sock: socket.socket, into: list[str]) -> list[str]:
    while True:
        try:
            into.append(sock.recv(4096).decode())
        except BlockingIOError:
            return into


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = SystemdNotifier({})
    assert not notifier.enabled
    assert notifier.watchdog_s is None
    notifier.notify("READY=1")  # no socket: must not raise


def test_watchdog_interval_is_only_taken_for_this_process() -> None:
    assert SystemdNotifier({"WATCHDOG_USEC": "30000000"}).watchdog_s == 30.0
    assert SystemdNotifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}).watchdog_s is None
    assert SystemdNotifier({"WATCHDOG_USEC": "junk"}).watchdog_s is None


def test_abstract_socket_name_is_translated() -> None:
    assert SystemdNotifier({"NOTIFY_SOCKET": "@/org/x"}).address == "\0/org/x"


def test_a_dead_socket_is_logged_not_raised(tmp_path: Path) -> None:
    with capture_logs() as logs:
        SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone")}).notify("READY=1")
    [entry] = logs
    assert (entry["event"], entry["log_level"], entry["message"]) == (
        "sd_notify_failed", "warning", "READY=1"
    )  # fmt: skip
    assert "No such file" in entry["reason"]


async def test_appliance_says_ready_feeds_the_watchdog_and_says_stopping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "notify"
    messages: list[str] = []
    with notify_socket(path) as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        monkeypatch.setenv("WATCHDOG_USEC", "200000")
        config = demo_config(tmp_path, [], sms=False)
        board = StatusBoard(config.gateway.id)
        stop = asyncio.Event()
        run = asyncio.create_task(run_appliance(config, stop=stop, board=board))
        await wait_until(
            lambda: received(sock, messages).count("WATCHDOG=1") >= 3,
            "three watchdog feeds",
            alive=run,
        )
        assert "READY=1" in messages
        assert "STOPPING=1" not in messages
        stop.set()
        await run
        received(sock, messages)
    assert messages.index("READY=1") < messages.index("STOPPING=1")
