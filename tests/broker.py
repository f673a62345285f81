"""A real mosquitto (Debian's package) for tests and benches.

Each Broker gets its own directory: a config, a password file made with mosquitto_passwd, the ACL
(by default the shipped receiver/mosquitto/acl.conf, verbatim), TLS files and a persistence
directory. It listens on a free loopback port and keeps that port and its persistence across
stop()/start() and kill()/start(), so tests can restart or crash it.

Mosquitto started as root drops to the `mosquitto` user: the directory and every file in it are
then handed to that user. Readiness is a TCP connect polled until a deadline, never a sleep.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

REPO = Path(__file__).resolve().parent.parent
SHIPPED_ACL = REPO / "receiver" / "mosquitto" / "acl.conf"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
HOST = "127.0.0.1"
READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0
RECEIVER_USER = "receiver"
TEST_GATEWAYS = ("gw-a", "gw-b", "gw-c")


def mosquitto_available() -> bool:
    return os.access(MOSQUITTO, os.X_OK) and os.access(MOSQUITTO_PASSWD, os.X_OK)


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


@dataclass(frozen=True)
class TlsFiles:
    """A CA and a server certificate for 127.0.0.1/localhost signed by it."""

    ca_path: Path
    cert_path: Path
    key_path: Path


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_tls_files(directory: Path, name: str = "appliance test") -> TlsFiles:
    """A fresh CA (EC P-256) and a server certificate it signed, with IP and DNS names for
    loopback. Call it twice for a CA the broker does not use (the wrong-CA case)."""
    directory.mkdir(parents=True, exist_ok=True)
    ec = ("-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256")
    openssl("genpkey", *ec, "-out", "ca.key", cwd=directory)
    openssl(
        "req", "-x509", "-new", "-key", "ca.key", "-sha256", "-days", "3",
        "-subj", f"/CN={name} CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-out", "ca.crt",
        cwd=directory,
    )  # fmt: skip
    openssl("genpkey", *ec, "-out", "server.key", cwd=directory)
    openssl("req", "-new", "-key", "server.key", "-subj", "/CN=localhost", "-out", "server.csr",
            cwd=directory)  # fmt: skip
    (directory / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
    )
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "3", "-sha256", "-extfile", "server.ext",
        "-out", "server.crt",
        cwd=directory,
    )  # fmt: skip
    return TlsFiles(directory / "ca.crt", directory / "server.crt", directory / "server.key")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def mosquitto_uid_gid() -> tuple[int, int] | None:
    """Whom mosquitto will run as if we start it as root (None: it runs as us)."""
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam("mosquitto")
    return entry.pw_uid, entry.pw_gid


class Broker:
    """One mosquitto process; build with Broker.create(...), then start()."""

    def __init__(
        self,
        directory: Path,
        port: int,
        credentials: Mapping[str, Credentials],
        tls: TlsFiles | None,
    ) -> None:
        self.directory = directory
        self.host = HOST
        self.port = port
        self.credentials = dict(credentials)
        self.tls = tls
        self.log_path = directory / "mosquitto.log"
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    def create(
        cls,
        users: Iterable[str],
        *,
        tls: TlsFiles | None = None,
        acl: str | None = None,
        extra_config: str = "",
        port: int | None = None,
    ) -> Broker:
        """Write the broker's files; `users` get random passwords (the receiver user is added).

        `tls`: listen with TLS using these files (copied into the broker's directory), else plain
        TCP. `acl`: ACL text (default: the shipped acl.conf); "" for no ACL at all.
        """
        directory = Path(tempfile.mkdtemp(prefix="mosquitto-test-"))
        names = dict.fromkeys([*users, RECEIVER_USER])
        credentials = {name: Credentials(name, secrets.token_urlsafe(12)) for name in names}
        copied = copy_tls(tls, directory) if tls else None
        acl_text = SHIPPED_ACL.read_text() if acl is None else acl
        broker = cls(directory, port or free_port(), credentials, copied)
        write_password_file(directory / "passwd", credentials.values())
        if acl_text:
            (directory / "acl.conf").write_text(acl_text)
        (directory / "data").mkdir()
        config = broker_config(broker, with_acl=bool(acl_text), extra=extra_config)
        (directory / "mosquitto.conf").write_text(config)
        hand_over(directory)
        return broker

    # --- addresses for clients ------------------------------------------------------------

    @property
    def ca_path(self) -> Path | None:
        return self.tls.ca_path if self.tls else None

    @property
    def scheme(self) -> str:
        return "mqtts" if self.tls else "mqtt"

    def url(self, username: str, password: str | None = None) -> str:
        """`mqtt[s]://user:pass@127.0.0.1:port` for `username` (its password unless given)."""
        secret = self.credentials[username].password if password is None else password
        return f"{self.scheme}://{quote(username)}:{quote(secret)}@{self.host}:{self.port}"

    def tls_context(self) -> ssl.SSLContext | None:
        if self.tls is None:
            return None
        return ssl.create_default_context(cafile=str(self.tls.ca_path))

    def client_args(self, username: str, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for aiomqtt.Client as `username`."""
        args: dict[str, Any] = {
            "hostname": self.host,
            "port": self.port,
            "username": username,
            "password": self.credentials[username].password,
            "tls_context": self.tls_context(),
        }
        args.update(overrides)
        return args

    # --- process control ------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start (again, on the same port and persistence) and wait until it accepts."""
        if self.running:
            raise RuntimeError(f"broker on port {self.port} is already running")
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.directory / "mosquitto.conf")],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not port_accepts(self.port):
            if not self.running:
                raise RuntimeError(f"mosquitto exited at start:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"mosquitto did not accept connections:\n{self.log_tail()}")
            time.sleep(0.01)

    def stop(self) -> None:
        """SIGTERM: mosquitto saves its persistence file and exits."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: whatever changed since the last autosave is lost."""
        self._end(signal.SIGKILL)

    def _end(self, sig: signal.Signals) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def close(self) -> None:
        """Kill the broker and remove its directory."""
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def __enter__(self) -> Broker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


BrokerFactory = Callable[..., Broker]
"""The make_broker fixture (tests/conftest.py)."""


def copy_tls(tls: TlsFiles, directory: Path) -> TlsFiles:
    target = directory / "tls"
    target.mkdir()
    paths = [shutil.copy(path, target / path.name) for path in (tls.ca_path, tls.cert_path,
             tls.key_path)]  # fmt: skip
    return TlsFiles(*(Path(path) for path in paths))


def write_password_file(path: Path, credentials: Iterable[Credentials]) -> None:
    """Plain user:password lines, then `mosquitto_passwd -U` hashes them in place."""
    path.write_text("".join(f"{c.username}:{c.password}\n" for c in credentials))
    subprocess.run([MOSQUITTO_PASSWD, "-U", str(path)], check=True, capture_output=True)


def broker_config(broker: Broker, *, with_acl: bool, extra: str) -> str:
    directory = broker.directory
    lines = [
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {directory / 'passwd'}",
        *([f"acl_file {directory / 'acl.conf'}"] if with_acl else []),
        "persistence true",
        f"persistence_location {directory / 'data'}/",
        "max_queued_messages 0",
        "max_inflight_messages 100",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "connection_messages true",
        f"listener {broker.port} {HOST}",
    ]
    if broker.tls:
        lines += [
            f"cafile {broker.tls.ca_path}",
            f"certfile {broker.tls.cert_path}",
            f"keyfile {broker.tls.key_path}",
        ]
    return "\n".join([*lines, extra, ""])


def hand_over(directory: Path) -> None:
    """Give the broker's directory to the `mosquitto` user when we are root."""
    owner = mosquitto_uid_gid()
    if owner is None:
        return
    for root, dirs, files in os.walk(directory):
        for name in [*dirs, *files]:
            os.chown(Path(root) / name, *owner)
    os.chown(directory, *owner)
