"""Composition root: builds every object from the config, wires the queues, runs the tasks and
shuts them down in order (capture first, then the stages, the store writer flushed, the SMS
sender, the uplink, the store closed last). Nothing imports this module."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import structlog

from appliance.capture.sources import Sources, build_sources
from appliance.config import ApplianceConfig
from appliance.detect.acks import AlertAcks
from appliance.detect.assets import AssetScoring, open_scorings, restore_health, save_states
from appliance.detect.health import AssetHealth, run_health_stage
from appliance.detect.restart import renotify_open_alarms, restore_alerts
from appliance.detect.routing import ROUTER_STATE, AlertRouter, run_alert_stage
from appliance.detect.stage import run_detect_stage
from appliance.detect.verdicts import EpisodeVerdicts
from appliance.devices import EmulatedDevices
from appliance.errors import ApplianceError
from appliance.features import AssetFeatures, diagnosis_stage
from appliance.features.from_config import build_feature_engines
from appliance.features.spectra import Spectra
from appliance.features.stage import run_feature_stage
from appliance.homeassistant import home_assistant
from appliance.net.cancellation import cancel_and_wait
from appliance.ota.manager import ModelManager
from appliance.ota.release.manager import ReleaseManager
from appliance.records import Alert, FeatureVector, SampleBlock
from appliance.sdnotify import SystemdNotifier
from appliance.sms.sender import ShownSms
from appliance.sms.service import SmsService, open_sms
from appliance.sms.settings import sms_settings
from appliance.status import StatusBoard
from appliance.store import (
    DetectorStates,
    Recorder,
    Store,
    StoredRecord,
    run_store_writer,
    store_settings,
)
from appliance.summary import SummaryPrinter
from appliance.uplink.publisher import Uplink
from appliance.web import serve_status
from appliance.web.history import ChartSources
from appliance.web.limits import ConnectionLimits
from appliance.wiring import (
    build_health,
    build_router,
    build_uplink,
    build_uplink_settings,
    open_models,
    open_releases,
)

log = structlog.get_logger(__name__)

QUEUE_BLOCKS = 4096
QUEUE_VECTORS = 1024
QUEUE_ALERTS = 256
STATE_SAVE_EVERY_S = 60.0
SHUTDOWN_DRAIN_S = 10.0
SHUTDOWN_GRACE_S = 15.0


@dataclass
class Pipeline:
    """The built stages and the queues between them."""

    board: StatusBoard
    sources: Sources
    engines: dict[str, AssetFeatures]
    health: dict[str, AssetHealth]
    scorings: dict[str, AssetScoring]
    router: AlertRouter
    recorder: Recorder
    """The store writer's part of the store."""
    detector_states: DetectorStates
    """The alert stage's writes and the periodic state saves."""
    blocks: asyncio.Queue[SampleBlock]
    vectors: asyncio.Queue[FeatureVector]
    """Feature stage -> detect stage."""
    alerts: asyncio.Queue[Alert]
    """Detect and health stages -> alert stage."""
    records: asyncio.Queue[StoredRecord]
    """Detect and alert stages -> store writer."""
    uplink: Uplink | None = None
    new_records: asyncio.Event = field(default_factory=asyncio.Event)
    """Set by the store writer after each committed batch; wakes the uplink."""
    sms: SmsService | None = None
    models: ModelManager | None = None
    """Over-the-air bundles; None without a [models] table."""
    releases: ReleaseManager | None = None
    """Over-the-air releases of the appliance itself; None without a [release] table."""
    notifier: SystemdNotifier = field(default_factory=SystemdNotifier)
    verdicts: EpisodeVerdicts | None = None
    """Operators' verdicts on anomaly episodes; the detect stage applies "not a fault"."""
    """READY/WATCHDOG/STOPPING to systemd when run as a notify service (image/)."""
    spectra: Spectra | None = None
    """Latest and baseline spectra, kept by the feature stage for the status page."""
    diagnosers: diagnosis_stage.Diagnosers = field(default_factory=dict)
    """The vibration diagnosis, inline in the feature stage (appliance/diagnosis/live.py)."""


async def run_appliance(
    config: ApplianceConfig,
    *,
    seconds: float | None = None,
    summary_every: float | None = None,
    summary_out: TextIO | None = None,
    summary_heading: Callable[[], str] | None = None,
    stop: asyncio.Event | None = None,
    board: StatusBoard | None = None,
    on_http_started: Callable[[str], None] | None = None,
    devices: EmulatedDevices | None = None,
) -> int:
    """Run until SIGINT/SIGTERM, `stop` is set or `seconds` pass; then stop capture, drain
    features and flush the store. Returns the exit status: 0, or RESTART_EXIT after a switch of
    releases (systemd starts the appliance again, from the release now linked).
    `summary_heading` starts each summary (the demo's page URL); `board` lets a caller watch
    the run (tests do); `on_http_started` gets the status page's URL once it listens (with an
    [http] table); `devices` are the emulated ones the config asks for (appliance/rig/
    attaches them)."""
    board = board or StatusBoard(config.gateway.id)
    stop = stop or asyncio.Event()
    releases = open_releases(config, board, stop)
    board.zone = config.gateway.zone()
    http_token = config.http.read_token() if config.http is not None else None
    blocks: asyncio.Queue[SampleBlock] = asyncio.Queue(QUEUE_BLOCKS)
    vectors: asyncio.Queue[FeatureVector] = asyncio.Queue(QUEUE_VECTORS)
    alerts: asyncio.Queue[Alert] = asyncio.Queue(QUEUE_ALERTS)
    records: asyncio.Queue[StoredRecord] = asyncio.Queue(QUEUE_VECTORS)
    board.queues.update(blocks=blocks, vectors=vectors, alerts=alerts, store=records)
    for asset in config.assets:
        board.asset(asset.name).samples.update({c.name: 0 for c in asset.channels})
        board.asset(asset.name).units.update({c.name: c.unit for c in asset.channels})
    uplink_config = build_uplink_settings(config)
    store_config = store_settings(config.store, with_uplink=uplink_config is not None)
    sms_config = sms_settings(config.gateway.id, config.sms) if config.sms is not None else None
    engines = build_feature_engines(config)
    health = build_health(config)
    router = build_router(config)
    router.diagnosis = lambda asset: diagnosis_stage.diagnosis_words(board, asset)
    board.alerts = router
    printer = (
        SummaryPrinter(board, summary_out, summary_heading)
        if summary_every and summary_out
        else None
    )
    sources = build_sources(config, blocks, devices)
    board.serial.update({name: link.stats for name, link in sources.links.items()})
    board.i2c.update({name: poller.stats for name, poller in sources.pollers.items()})
    async with (
        await Store.open(store_config) as store,
        open_models(config, store, board, engines) as models,
    ):
        board.store = store.stats
        states = await store.detector_states.load_states()
        installed = models.installed_models() if models is not None else {}
        scorings = await open_scorings(config, store.history, board, states, installed)
        if models is not None:
            models.attach(scorings)
            board.models = models.status
        restore_health(health, states)
        restore_alerts(router, states, scorings, health, board, time.time())
        await save_states(store.detector_states, scorings, health, router)
        await sources.check_i2c()
        pipeline = Pipeline(
            board, sources, engines, health, scorings, router, store.recorder,
            store.detector_states, blocks, vectors, alerts, records, models=models,
        )  # fmt: skip
        pipeline.spectra = Spectra(engines)
        pipeline.diagnosers = diagnosis_stage.diagnosers_on_board(
            config, board, router.open_anomaly, diagnosis_stage.to_alert_stage(alerts)
        )
        for channel in pipeline.spectra.restore(states):
            log.warning("spectrum_baseline_dropped", channel=channel, reason="does not fit")
        acks = await AlertAcks.load(store.detector_states, pipeline.new_records.set)
        board.acks = acks
        pipeline.verdicts = await EpisodeVerdicts.load(
            store.detector_states, pipeline.new_records.set
        )
        board.verdicts = pipeline.verdicts
        if uplink_config is not None:
            pipeline.uplink = build_uplink(
                uplink_config, store.delivery, pipeline.new_records, models,
                home_assistant(config, board), releases,
            )  # fmt: skip
            board.uplink = pipeline.uplink.status
            if releases is not None:
                releases.on_change = pipeline.uplink.status_changed
        pipeline.releases = releases
        if sms_config is not None:
            pipeline.sms = await open_sms(
                sms_config, store.sms_queue, board, devices, pipeline.new_records.set
            )
            await renotify_open_alarms(
                router, acks, store.sms_queue, pipeline.sms.intake, time.time()
            )
        async with contextlib.AsyncExitStack() as stack:
            if config.http is not None:
                await stack.enter_async_context(
                    serve_status(
                        board,
                        config.http.host,
                        config.http.port,
                        http_token,
                        Path(config.store.path).parent,
                        models,
                        pipeline.sms.intake if pipeline.sms is not None else None,
                        on_http_started,
                        limits=ConnectionLimits.from_config(config.http),
                        charts=ChartSources(
                            store.history_query,
                            pipeline.spectra,
                            {asset.name: asset for asset in config.assets},
                            {name: engine.feature_names for name, engine in engines.items()},
                            board.zone,
                        ),
                        releases=releases,
                    )
                )
            if devices is not None:  # the emulated MCUs stream from now on, as capture starts
                await stack.enter_async_context(devices.running(_on_sms_delivered(pipeline.sms)))
            await _run_tasks(pipeline, stop, seconds, printer, summary_every)
    return releases.exit_status if releases is not None else 0


def _on_sms_delivered(sms: SmsService | None) -> Callable[[ShownSms], None]:
    """Where an emulated modem's SMS go: the status board's "would have been sent"."""
    if sms is None:
        return lambda _: None
    return sms.status.would_have_sent.append


async def _run_tasks(
    p: Pipeline,
    stop: asyncio.Event,
    seconds: float | None,
    printer: SummaryPrinter | None,
    summary_every: float | None,
) -> None:
    async with asyncio.TaskGroup() as group, _stop_on_signals(stop):
        writer = group.create_task(
            run_store_writer(p.recorder, p.records, on_stored=p.new_records.set), name="store"
        )
        uplink = None
        if p.uplink is not None:
            uplink = group.create_task(p.uplink.run(), name="uplink")
        sms = None
        if p.sms is not None:
            sms = group.create_task(p.sms.sender.run(), name="sms")
        intake = p.sms.intake.accept if p.sms is not None else None
        routing = group.create_task(
            run_alert_stage(
                p.router,
                p.alerts,
                p.records,
                intake,
                lambda alerts: _store_routed(p, alerts),
                on_routed=p.board.changed,
            ),
            name="alerts",
        )
        on_probation_failed = p.models.probation_failed if p.models is not None else None
        detect = group.create_task(
            run_detect_stage(
                p.scorings,
                p.vectors,
                p.records,
                p.alerts,
                p.board,
                on_probation_failed,
                p.verdicts,
            ),
            name="detect",
        )
        models = None
        if p.models is not None:
            models = group.create_task(p.models.run(), name="models")
        health = group.create_task(run_health_stage(p.health, p.alerts, p.board), name="health")
        observers = diagnosis_stage.feature_observers(p.health, p.diagnosers)
        features = group.create_task(
            run_feature_stage(p.engines, p.blocks, p.vectors, p.board, observers, p.spectra),
            name="features",
        )
        saver = group.create_task(_save_states_every(p, STATE_SAVE_EVERY_S), name="state")
        capture = [group.create_task(c) for c in p.sources.tasks()]
        summary = None
        if printer is not None and summary_every:
            summary = group.create_task(printer.run(summary_every), name="summary")
        watchdog = group.create_task(p.notifier.feed_watchdog(), name="watchdog")
        p.notifier.notify("READY=1")
        releases = None
        if p.releases is not None:  # a release on trial counts from READY on
            releases = group.create_task(p.releases.run(lambda: unhealthy(p)), name="releases")
        log.info("appliance_started", gateway=p.board.gateway_id, assets=sorted(p.engines))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await stop.wait()
        log.info("appliance_stopping")
        p.notifier.notify("STOPPING=1")
        if models is not None:
            await _cancel(models)  # an install in progress finishes or never happened
        if releases is not None:
            await _cancel(releases)
        await _cancel(*capture)
        await _drain(p.blocks)
        await _cancel(features)
        await _drain(p.vectors)
        await _cancel(detect, health, saver)
        await _drain(p.alerts)  # also: every alert for SMS committed to the SMS queue
        await _cancel(routing)
        await _save_states_logged(p)
        await _cancel(writer)  # the writer flushes everything queued before it returns
        if sms is not None:
            await _cancel(sms)  # a send in progress gets a grace period; the queue stays stored
        if uplink is not None:
            await _cancel(uplink)  # says offline; what it did not send waits in the store
        if summary is not None and printer is not None:
            await _cancel(summary)
            printer.print_once(final=True)
        await _cancel(watchdog)
    log.info("appliance_stopped", rows_written=p.recorder.stats.rows_written)


def unhealthy(p: Pipeline) -> str | None:
    """What a release on trial still lacks (READY is sent before this is asked): a feature
    window from every asset, a scored window from every asset with a model, the uplink
    connected when there is one. None once it has it all."""
    quiet = [asset for asset in p.engines if p.board.asset(asset).vectors == 0]
    if quiet:
        return f"no feature window yet from {', '.join(sorted(quiet))}"
    unscored = [
        asset
        for asset, scoring in p.scorings.items()
        if scoring.detector is not None and p.board.asset(asset).scores == 0
    ]
    if unscored:
        return f"no window scored yet for {', '.join(sorted(unscored))}"
    if p.board.uplink is not None and not p.board.uplink.connected:
        return "the uplink has not connected"
    return None


async def _drain(queue: asyncio.Queue[Any]) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(SHUTDOWN_DRAIN_S):
            await queue.join()


async def _save_states_every(p: Pipeline, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        await _save_states_logged(p)


async def _store_routed(p: Pipeline, alerts: Sequence[Alert]) -> None:
    """The alert stage's alerts and its state, in one transaction (appliance/detect/restart.py)."""
    await p.detector_states.add_alerts_with_states(alerts, {ROUTER_STATE: p.router.to_state()})
    if alerts:
        p.new_records.set()


async def _save_states_logged(p: Pipeline) -> None:
    """A failed save is logged, never fatal: the next one (or a replay) catches up."""
    try:
        await save_states(p.detector_states, p.scorings, p.health, p.router)
        if p.spectra is not None:
            await p.detector_states.save_states(p.spectra.to_states())
    except (ApplianceError, ValueError) as exc:
        log.warning("detector_state_save_failed", reason=str(exc))


async def _cancel(*tasks: asyncio.Task[None]) -> None:
    """Cancel and wait; the grace leaves the writer's flush and a send in progress time to end."""
    await cancel_and_wait(*tasks, grace_s=SHUTDOWN_GRACE_S, on_cancel_again=_cancelled_again)


def _cancelled_again(names: list[str]) -> None:
    log.warning("task_cancelled_again", tasks=names)


@contextlib.asynccontextmanager
async def _stop_on_signals(stop: asyncio.Event) -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        yield
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
