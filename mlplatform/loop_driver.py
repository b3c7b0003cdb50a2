"""The daemon's loop, ticked by hand: evaluate the sensors and declarative automation in process and run
what they request, until nothing more is requested.

The Dagster daemon does the same on timers (sensors every 30 s to 5 min, automation every 30 s) and
launches runs through the run queue. Ticking by hand makes the loop deterministic: end-to-end tests use it,
and the lead-time benchmark uses it to separate the work itself from the waiting between ticks.
"""

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from dagster import (
    AssetKey,
    DagsterInstance,
    Definitions,
    RunRequest,
    SensorResult,
    build_sensor_context,
    evaluate_automation_conditions,
)
from dagster._core.definitions.asset_daemon_cursor import AssetDaemonCursor  # the type of result.cursor

RUN_KEY_TAG = "dagster/run_key"
log = logging.getLogger(__name__)


@dataclass
class LaunchedRun:
    trigger: str  # the sensor's name, or "automation"
    label: str  # what ran: the job, or the assets and partition
    success: bool
    seconds: float
    tags: dict[str, str]


@dataclass
class LoopDriver:
    defs: Definitions
    instance: DagsterInstance
    sensors: tuple[str, ...] = ("landing_zone_sensor", "retrain_fraud_model_sensor")
    runs: list[LaunchedRun] = field(default_factory=list)
    tick_seconds: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    _cursors: dict[str, str | None] = field(default_factory=dict)
    _automation_cursor: AssetDaemonCursor | None = None
    _run_keys: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def tick(self) -> int:
        """One round: each sensor, then declarative automation, running what each requests. Returns the
        number of runs launched."""
        launched = 0
        for name in self.sensors:
            launched += sum(self._run(name, request) for request in self._sensor_requests(name))
        started = time.perf_counter()
        result = evaluate_automation_conditions(
            defs=self.defs, instance=self.instance, cursor=self._automation_cursor
        )
        self.tick_seconds["automation"].append(time.perf_counter() - started)
        self._automation_cursor = result.cursor
        requested: dict[str | None, list[AssetKey]] = defaultdict(list)
        for evaluation in result.results:
            if isinstance(evaluation.key, AssetKey):
                for partition in result.get_requested_partitions(evaluation.key):
                    requested[partition].append(evaluation.key)
        # unpartitioned first (e.g. dbt before the days it feeds), then day by day, like the run queue
        for partition in sorted(requested, key=lambda p: (p is not None, p or "")):
            launched += self._run(
                "automation", RunRequest(asset_selection=requested[partition], partition_key=partition)
            )
        return launched

    def run_until_quiet(self, max_rounds: int = 20, after_round: Callable[[int], None] | None = None) -> int:
        """Tick until a round launches nothing; returns the rounds it took."""
        for round_number in range(1, max_rounds + 1):
            if not self.tick():
                return round_number
            if after_round:
                after_round(round_number)
        raise RuntimeError(f"the loop still requested runs after {max_rounds} rounds")

    def _sensor_requests(self, name: str) -> list[RunRequest]:
        sensor = self.defs.resolve_sensor_def(name)
        started = time.perf_counter()
        with build_sensor_context(
            instance=self.instance,
            cursor=self._cursors.get(name),
            definitions=self.defs,
            resources=self.defs.resources,
        ) as context:
            result = sensor(context)
        self.tick_seconds[name].append(time.perf_counter() - started)
        if isinstance(result, SensorResult):
            self._cursors[name] = result.cursor
            requests = list(result.run_requests or [])
        else:
            requests = [result] if isinstance(result, RunRequest) else []
        fresh = [r for r in requests if r.run_key is None or r.run_key not in self._run_keys[name]]
        self._run_keys[name].update(r.run_key for r in fresh if r.run_key)  # as the daemon: once per key
        return fresh

    def _run(self, trigger: str, request: RunRequest) -> bool:
        tags = {**request.tags, **({RUN_KEY_TAG: request.run_key} if request.run_key else {})}
        started = time.perf_counter()
        # the sensor's job (all of it, or the assets the request selects), else the assets alone
        job_name = self.defs.resolve_sensor_def(trigger).job_name if trigger != "automation" else None
        job = (
            self.defs.resolve_job_def(job_name)
            if job_name
            else self.defs.resolve_implicit_global_asset_job_def()
        )
        selection = list(request.asset_selection) if request.asset_selection is not None else None
        result = job.execute_in_process(
            asset_selection=selection,
            partition_key=request.partition_key,
            instance=self.instance,
            tags=tags,
            raise_on_error=False,
        )
        label = ", ".join(k.to_user_string() for k in selection) if selection else job.name
        label = f"{label} [{request.partition_key}]" if request.partition_key else label
        run = LaunchedRun(trigger, label, result.success, time.perf_counter() - started, tags)
        log.info("%s: %s %s in %.1fs", trigger, label, "succeeded" if run.success else "FAILED", run.seconds)
        self.runs.append(run)
        return True
