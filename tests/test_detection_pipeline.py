"""Detection in the running pipeline on the emulated rig: scores and alerts stored after their
vectors, sensor faults told apart, state kept across restarts, commissioning without a bundle."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from waiting import run_appliance_until

from appliance.config import ApplianceConfig, parse_config
from appliance.detect.assets import open_scorings
from appliance.detect.bundle import load_bundle
from appliance.detect.commissioning import LinearModel
from appliance.rig.demo import demo_config
from appliance.status import StatusBoard
from appliance.store import Store, StoreSettings

DEADLINE_S = 90.0


async def run_until(
    config: ApplianceConfig, condition: Callable[[StatusBoard], bool], what: str
) -> StatusBoard:
    return await run_appliance_until(config, condition, what, DEADLINE_S)


def scored_at_least(board: StatusBoard, scores: int) -> bool:
    statuses = [board.assets.get(name) for name in ("pump-1", "compressor-2")]
    return all(s is not None and s.scores >= scores for s in statuses)


def open_alert_kinds(board: StatusBoard) -> set[tuple[str, str | None, str]]:
    return set() if board.alerts is None else set(board.alerts.open)


async def stored(path: Path) -> dict[str, Any]:
    async with await Store.open(StoreSettings(path=path)) as store:
        return {
            "outbox": await store.history.outbox(limit=100_000),
            "states": await store.detector_states.load_states(),
        }


async def test_scores_and_alerts_are_stored_in_order_and_a_stuck_sensor_is_named(
    tmp_path: Path,
) -> None:
    config = demo_config(tmp_path, ["flatline"])
    board = await run_until(
        config,
        lambda b: (
            ("compressor-2", "accel_x", "flatline") in open_alert_kinds(b) and scored_at_least(b, 3)
        ),
        "a flatline alarm on compressor-2 accel_x and 3 scores per asset",
    )
    outbox = (await stored(tmp_path / "appliance.db"))["outbox"]
    kinds = [type(record).__name__ for _, record in outbox]
    scores = [record for _, record in outbox if type(record).__name__ == "Score"]
    assert len(scores) == sum(a.scores for a in board.assets.values()) > 0
    # Every score directly follows the vector it judged (same asset, same window end).
    for i, kind in enumerate(kinds):
        if kind == "Score":
            vector = outbox[i - 1][1]
            assert type(vector).__name__ == "FeatureVector"
            assert (vector.asset, vector.window_end) == (outbox[i][1].asset, outbox[i][1].t)
    alerts = [record for _, record in outbox if type(record).__name__ == "Alert"]
    flatline = [a for a in alerts if a.kind == "flatline_raised"]
    assert [(a.asset, a.channel) for a in flatline] == [("compressor-2", "accel_x")]
    assert "sensor stuck" in flatline[0].message
    # The healthy pump raised nothing.
    assert not [a for a in alerts if a.asset == "pump-1"]


async def test_threshold_and_alarm_state_continue_after_a_restart(tmp_path: Path) -> None:
    config = demo_config(tmp_path, [])
    await run_until(config, lambda b: scored_at_least(b, 5), "5 scores per asset")
    states = (await stored(tmp_path / "appliance.db"))["states"]
    saved = states["pump-1", "detector"]
    assert saved["model_id"] == bundle_id_of(config, "pump-1")

    async with await Store.open(StoreSettings(path=tmp_path / "appliance.db")) as store:
        scorings = await open_scorings(config, store.history, StatusBoard("gw"), states)
    restored = scorings["pump-1"].detector
    assert restored is not None
    assert restored.to_state() == saved
    fresh = await fresh_detector_state(tmp_path, config)
    assert fresh["threshold"] != saved["threshold"]


def bundle_id_of(config: ApplianceConfig, asset: str) -> str:
    bundle = next(a.model.bundle for a in config.assets if a.name == asset)
    assert bundle is not None
    return load_bundle(Path(bundle)).bundle_id


async def fresh_detector_state(tmp_path: Path, config: ApplianceConfig) -> dict[str, object]:
    async with await Store.open(StoreSettings(path=tmp_path / "empty.db")) as store:
        scorings = await open_scorings(config, store.history, StatusBoard("gw"), {})
    detector = scorings["pump-1"].detector
    assert detector is not None
    return detector.to_state()


def commissioning_config(tmp_path: Path) -> ApplianceConfig:
    document = demo_config(tmp_path, []).model_dump()
    document["assets"][1]["model"] = {"commission_hours": 24 / 3600, "commission_min_windows": 20}
    return parse_config(document)


async def test_an_asset_without_a_bundle_commissions_resumes_after_a_restart_then_scores(
    tmp_path: Path,
) -> None:
    config = commissioning_config(tmp_path)
    first = await run_until(
        config,
        lambda b: "compressor-2" in b.assets and b.assets["compressor-2"].vectors >= 6,
        "6 windows of commissioning",
    )
    assert first.assets["compressor-2"].model.startswith("commissioning (learning normal)")
    assert first.assets["compressor-2"].scores == 0

    states = (await stored(tmp_path / "appliance.db"))["states"]
    async with await Store.open(StoreSettings(path=tmp_path / "appliance.db")) as store:
        scorings = await open_scorings(config, store.history, StatusBoard("gw"), states)
    resumed = scorings["compressor-2"].commissioner
    assert resumed is not None
    assert resumed.started_at == states["compressor-2", "commissioning"]["started_at"]
    assert resumed.windows >= 6  # the stored windows were replayed

    second = await run_until(
        config,
        lambda b: "compressor-2" in b.assets and b.assets["compressor-2"].scores >= 3,
        "3 scores from the commissioned model",
    )
    assert second.assets["compressor-2"].model.startswith("scoring with commissioned-compressor-2")
    final = (await stored(tmp_path / "appliance.db"))["states"]
    model = LinearModel.from_state(final["compressor-2", "commissioned_model"])
    assert ("compressor-2", "commissioning") not in final
    assert final["compressor-2", "detector"]["model_id"] == model.model_id
