"""Shared by bench_backlog.py and bench_receiver.py: demo-width records, real mosquitto brokers
(tests/broker.py), `appliance-receiver` subprocesses and a few small helpers.

Records: one asset's feature vectors with the demo's 49 feature names (3 accelerometer axes x 13
features, bearing temperature and motor current x 5), values drawn around a vector captured from
a real `appliance demo` run (so the JSON numbers have realistic widths), each followed by its
score, one pair per second, as the pipeline stores them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from broker import (  # noqa: E402  (tests/broker.py: a real mosquitto with TLS, passwords, ACL)
    Broker,
    TlsFiles,
    free_port,
    make_tls_files,
    mosquitto_available,
)

from appliance.records import FeatureVector, Score  # noqa: E402
from appliance.store.codec import StoredRecord  # noqa: E402

PREFIX = "appliance"
GATEWAY = "gw-bench"
ASSET = "pump-1"
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
MODEL_ID = "demo-1-fd43f7601608"
RECEIVER_BIN = Path(sys.executable).parent / "appliance-receiver"

_ACCEL = (
    "mean", "std", "rms", "peak", "crest_factor", "excess_kurtosis", "spectral_energy",
    "dominant_freq_hz", "band_0_100hz", "band_100_200hz", "band_200_300hz", "band_300_400hz",
    "band_400_500hz",
)  # fmt: skip
_SLOW = ("mean", "std", "min", "max", "slope")
DEMO_NAMES: tuple[str, ...] = (
    *(f"accel_{axis}.{name}" for axis in "xyz" for name in _ACCEL),
    *(f"bearing_temp.{name}" for name in _SLOW),
    *(f"motor_current.{name}" for name in _SLOW),
)
# pump-1's last vector of a 12 s `appliance demo` run (feature_schemas/features of its store).
DEMO_VECTOR = np.array([
    -5.478844536072485e-05, 0.0386886332172676, 0.038688672011249065, 0.08573828532234984,
    2.216108252498837, -0.8816039813295324, 0.001495523100127311, 31.25, 0.0014831158517192582,
    3.1085950006974476e-06, 3.059135628802348e-06, 3.03665513770164e-06, 3.2028626408515924e-06,
    1.7653246030791847e-06, 0.0386481899236605, 0.03864818996397767, 0.07811328496018177,
    2.021136954485782, -1.1090056176541787, 0.0014946160775338377, 31.25, 0.0014814916884204501,
    3.2931575416855526e-06, 3.2669873805124077e-06, 3.3724303913751783e-06, 3.19181379981447e-06,
    1.0000401045594003, 0.015953526424152677, 1.0001673488634502, 1.040281299410708,
    1.0401072386464543, -0.7696854603484473, 0.00025382715360527816, 31.25,
    0.00024105800656435905, 3.2473544410022207e-06, 3.0147963610196988e-06,
    3.315020197370372e-06, 3.1919760415268324e-06, 40.0078125, 0.00744892647848119, 40.0,
    40.0234375, 0.002201527459177742, 1.8493696732954545, 0.030690864231285593, 1.80068359375,
    1.8977539062500002, 0.009705087308506138,
])  # fmt: skip
assert len(DEMO_NAMES) == len(DEMO_VECTOR) == 49


def demo_records(seconds: int, asset: str = ASSET, seed: int = 0) -> list[StoredRecord]:
    """`seconds` feature vectors (demo width) each followed by its score: 2 x seconds records."""
    rng = np.random.default_rng(seed)
    jitter = 1.0 + 0.05 * rng.standard_normal((seconds, len(DEMO_VECTOR)))
    values = DEMO_VECTOR * jitter
    errors = np.abs(0.7 + 0.2 * rng.standard_normal(seconds))
    records: list[StoredRecord] = []
    for i in range(seconds):
        t = T0 + i + 0.896
        records.append(FeatureVector(asset, t, DEMO_NAMES, values[i]))
        anomalous = bool(errors[i] > 2.25)
        records.append(Score(asset, t, MODEL_ID, float(errors[i]), 2.2507143740961735, anomalous,
                             ("accel_x.rms",) if anomalous else ()))  # fmt: skip
    return records


# --- brokers ----------------------------------------------------------------------------------


def deployed_broker(tls: TlsFiles, users: Sequence[str] = (GATEWAY,)) -> Broker:
    """A mosquitto as receiver/mosquitto/mosquitto.conf deploys it: TLS, passwords, the shipped
    ACL, persistence, no queue count limit (tests/broker.py writes the config). Not started:
    `with deployed_broker(tls) as broker:` starts it and removes it at the end."""
    if not mosquitto_available():
        raise SystemExit("mosquitto and mosquitto_passwd are needed (apt-get install mosquitto)")
    return Broker.create(users, tls=tls)


def new_tls(directory: Path) -> TlsFiles:
    return make_tls_files(directory / "tls", name="bench")


# --- receiver subprocesses --------------------------------------------------------------------


@dataclass
class ReceiverProcess:
    """One `appliance-receiver` instance; its JSON log lines go to `log_path`."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def events(self, event: str) -> list[dict[str, Any]]:
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if entry.get("event") == event:
                found.append(entry)
        return found

    def wait_subscribed(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.events("receiver_subscribed"):
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not subscribe:\n{self.log_path.read_text()}")
            time.sleep(0.02)

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far (Linux /proc; 0 elsewhere)."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> dict[str, Any]:
        """SIGTERM (the command exits 0 after logging receiver_stopped with its counters)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        stopped = self.events("receiver_stopped")
        return stopped[-1] if stopped else {}


def start_receiver(
    broker: Broker,
    db_url: str,
    log_path: Path,
    *,
    name: str = "rx-1",
    group: str = "bench",
    cpu: int | None = None,
    stats_interval_s: float = 60.0,
    client_id: str | None = None,
) -> ReceiverProcess:
    """`appliance-receiver` against `broker` (user receiver), optionally pinned to one CPU."""
    command = [
        str(RECEIVER_BIN),
        "--broker", broker.url("receiver"),
        "--db", db_url,
        "--group", group,
        "--prefix", PREFIX,
        "--stats-interval", str(stats_interval_s),
    ]  # fmt: skip
    if client_id is not None:
        command += ["--client-id", client_id]
    if broker.ca_path is not None:
        command += ["--ca", str(broker.ca_path)]
    if cpu is not None and shutil.which("taskset"):
        command = ["taskset", "-c", str(cpu), *command]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    receiver = ReceiverProcess(name, process, log_path)
    try:
        receiver.wait_subscribed()
    except BaseException:
        receiver.stop()
        raise
    return receiver


def shell_command(parts: Iterable[str]) -> str:
    import shlex

    return shlex.join(list(parts))


__all__ = [
    "ASSET",
    "DEMO_NAMES",
    "GATEWAY",
    "PREFIX",
    "REPO",
    "Broker",
    "ReceiverProcess",
    "TlsFiles",
    "demo_records",
    "deployed_broker",
    "free_port",
    "new_tls",
    "start_receiver",
]
