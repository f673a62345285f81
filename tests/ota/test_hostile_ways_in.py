"""Issue 12 against the running appliance: hostile bundles and commands through every way in
(the inbox, the page's upload, the MQTT command topic with a real mosquitto). Each is refused
with a reason, counted, visible, and the file moved to refused/; the appliance goes on scoring,
its uplink connection stays up, and nothing is created outside the model library."""

from __future__ import annotations

import asyncio
import io
import os
import secrets
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from broker import Broker
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ota_helpers import (
    GATEWAY,
    MODELLER,
    archive,
    drop,
    ota_config,
    result,
    send,
    send_command,
    variant,
)
from test_signing_archive import members_of, pax_tar_of, sparse_member
from waiting import wait_until

from appliance.config import HttpConfig
from appliance.detect.bundle import MANIFEST_FILE
from appliance.ota.archive import pack
from appliance.ota.signing import sign_bundle
from appliance.rig import run_appliance
from appliance.rig.demo import demo_uplink
from appliance.status import StatusBoard
from appliance.uplink.commands import Command

ASSET = "pump-1"
TOKEN = "test-token-0123456789abcdef"


def poison_tar() -> bytes:
    """The issue's: unsigned, about 10 KB, one member with a 300-character name."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("a" * 300)
        info.size = 9000
        tar.addfile(info, io.BytesIO(b"x" * 9000))
    return out.getvalue()


def hostile_signed(tmp: Path, key: Ed25519PrivateKey, outside: Path) -> dict[str, bytes]:
    """Bundles signed with the trusted key whose manifests (or archives) are hostile."""

    def with_field(name: str, value: object) -> Callable[[dict[str, Any]], None]:
        return lambda manifest: manifest.__setitem__(name, value)

    many = [f"f{i}" for i in range(200_000)]
    deep = "[" * 100_000 + "]" * 100_000
    signed = variant(tmp / "plain", "2026.05", key)
    return {
        "escape.tar": archive(tmp, "esc", key, with_field("version", "../../escape")),
        "absolute.tar": archive(tmp, "abs", key, with_field("version", str(outside))),
        "subdir.tar": archive(tmp, "sub", key, with_field("version", "sub/dir")),
        "long.tar": archive(tmp, "long", key, with_field("version", "v" * 300)),
        "deep.tar": signed_text(
            tmp,
            key,
            lambda text: text.replace('"training": {', '"training": {"deep": ' + deep + ","),
        ),
        "features.tar": archive(
            tmp,
            "many",
            key,
            lambda m: m.update(
                feature_names=many, scaler_mean=[0.0] * len(many), scaler_scale=[1.0] * len(many)
            ),
        ),
        "sparse.tar": pax_tar_of(*members_of(signed), sparse_member("extra.bin", 3 * 2**30)),
        "extra.tar": pax_tar_of(*members_of(signed), (tarfile.TarInfo("extra.bin"), b"x")),
        "older.tar": archive(tmp, "2026.01", key),
    }


def signed_text(tmp: Path, key: Ed25519PrivateKey, edit: Callable[[str], str]) -> bytes:
    """A bundle whose manifest text is `edit`ed (for what json.dumps cannot write), signed."""
    bundle = variant(tmp / "text", "2026.06", None)
    manifest = bundle / MANIFEST_FILE
    manifest.write_text(edit(manifest.read_text()))
    sign_bundle(bundle, key)
    return pack(bundle)


async def command(broker: Broker, made: Command) -> dict[str, Any]:
    return (await send_command(broker, made)).outcome


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if "model-inbox" not in p.parts)


async def test_hostile_bundles_and_commands_are_refused_through_every_way_in(
    make_broker: Callable[..., Broker], tmp_path: Path
) -> None:
    broker = make_broker(users=(GATEWAY, MODELLER, "receiver"))
    key = Ed25519PrivateKey.generate()
    data_dir = tmp_path / "gw"
    data_dir.mkdir()
    config = ota_config(data_dir, key, uplink=demo_uplink(broker.url(GATEWAY), broker.ca_path))
    config = config.model_copy(update={"http": HttpConfig(port=0, token=TOKEN)})
    inbox = data_dir / "model-inbox"
    inbox.mkdir()
    os.mkfifo(inbox / "fifo.tar")  # reading it would block the inbox for ever
    (inbox / "dir.tar").mkdir()
    (inbox / "at-start.tar").write_bytes(poison_tar())  # left by a previous run that crashed
    board = StatusBoard(config.gateway.id)
    urls: list[str] = []
    stop = asyncio.Event()
    run = asyncio.create_task(
        run_appliance(config, stop=stop, board=board, on_http_started=urls.append)
    )
    await wait_until(
        lambda: board.asset(ASSET).scores >= 8 and board.uplink is not None
        and board.uplink.connected and bool(urls),
        "scores, a connected uplink and the page",
        alive=run,
    )  # fmt: skip
    assert board.uplink is not None
    models = board.models

    # The poison tar through each way in: a refusal naming the archive check, never a crash.
    at_start = lambda: result(inbox, "refused", "at-start.tar") is not None  # noqa: E731
    await wait_until(at_start, "the file left at start", alive=run)
    await drop(inbox, "poison.tar", poison_tar())
    await wait_until(lambda: result(inbox, "refused", "poison.tar") is not None, "inbox", alive=run)
    assert str((result(inbox, "refused", "poison.tar") or {})["message"]).startswith("archive: ")
    assert (inbox / "refused" / "poison.tar").exists() and not (inbox / "poison.tar").exists()
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-tar"}
        async with http.post(urls[0] + "api/models", data=poison_tar(), headers=headers) as answer:
            assert answer.status == 422
            assert (await answer.json())["error"].startswith("archive: ")
    poison = Command(secrets.token_hex(8), "install_model", bundle=poison_tar())
    outcome = await command(broker, poison)
    assert outcome["accepted"] is False and outcome["message"].startswith("archive: ")

    # Deep JSON on the command topic: nobody to answer (no readable id), but refused and
    # counted, and the connection serves the next command.
    await send(
        broker, b'{"v": 1, "id": "deep", "a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", None
    )
    await wait_until(lambda: models.refusals == 5, "the deep command refused", alive=run)
    assert models.outcomes[-1].action == "command" and "nested" in models.outcomes[-1].message
    rollback = await command(broker, Command(secrets.token_hex(8), "rollback_model", asset=ASSET))
    assert "nothing to roll back" in rollback["message"]
    await drop(inbox, "deep.request", b'{"action": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    await wait_until(lambda: result(inbox, "refused", "deep.request") is not None, "request")
    assert models.refusals == 7 and board.uplink.connections == 1

    # A good bundle, then hostile signed ones: each refused, nothing changes anywhere.
    await drop(inbox, "good.tar", archive(tmp_path / "bundles", "2026.02", key))
    await wait_until(lambda: result(inbox, "done", "good.tar") is not None, "install", alive=run)
    active = models.active[ASSET]
    assert active.startswith("2026.02-")
    before, library = listing(tmp_path), listing(data_dir / "ota-models")
    outside = tmp_path / "outside"
    expected = {
        "escape.tar": "bundle: manifest.json: version: must be 1-40 letters",
        "absolute.tar": "bundle: manifest.json: version: must be 1-40 letters",
        "subdir.tar": "bundle: manifest.json: version: must be 1-40 letters",
        "long.tar": "bundle: manifest.json: version: must be 1-40 letters",
        "deep.tar": "bundle: manifest.json: nested deeper than 32 levels",
        "features.tar": "archive: manifest.json is bigger than",
        "sparse.tar": "archive: 'extra.bin' is not a plain file of a bundle",
        "extra.tar": "archive: extra.bin is not a file the signed manifest names",
        "older.tar": f"version: 2026.01 is older than the active {active.rsplit('-', 1)[0]}",
    }
    for name, data in hostile_signed(tmp_path / "hostile", key, outside).items():
        await drop(inbox, name, data)
        await wait_until(
            lambda: result(inbox, "refused", name) is not None,  # noqa: B023
            f"{name} refused",
            alive=run,
        )
        message = str((result(inbox, "refused", name) or {})["message"])
        assert message.startswith(expected[name]), (name, message)
    assert models.refusals == 7 + len(expected) and models.active[ASSET] == active
    assert listing(data_dir / "ota-models") == library
    assert [p for p in listing(tmp_path) if p not in before and "hostile" not in p] == []
    assert not outside.exists() and not (data_dir / "escape").exists()

    # An older version is installed when the sender says so.
    older = archive(tmp_path / "again", "2026.01", key)
    allowed = await command(
        broker, Command(secrets.token_hex(8), "install_model", older, allow_downgrade=True)
    )
    assert allowed["accepted"] is True and allowed["model"].startswith("2026.01-"), allowed

    scores = board.asset(ASSET).scores
    await wait_until(lambda: board.asset(ASSET).scores > scores, "still scoring", alive=run)
    assert board.uplink.connections == 1 and not run.done()
    stop.set()
    await run
