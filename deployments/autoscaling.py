"""Queue-driven autoscaling for the inference deployment: a Serve class policy over the job store.

Serve's own autoscaling counts requests queued at deployment handles, but our jobs wait in the
job store, where no handle sees them, and with zero replicas no replica can report them either.
So this policy reads the queue itself (`JobStore.queue_stats()`, running counts), asks `voiceq.scaling.decide` for the
replica count, and Serve sets it. Each inference replica needs a GPU: in the DigitalOcean
cluster a replica that cannot be placed makes Ray's autoscaler create a GPU droplet, and a
droplet left without one is destroyed after the cluster's `idle_timeout_minutes`.

Modelled on Ray 2.55's `AsyncInferenceAutoscalingPolicy`: Serve's controller calls the policy
about every 0.1 s on its event loop, so the policy never blocks. It starts at most one one-shot
poll task per `poll_interval_s` (no background loop that would outlive the policy when Serve
drops it on redeploy); the store call runs in a thread under `poll_timeout_s`. When the store
cannot be read, the last reading ages out after `stale_after_s` and the fleet is held as it is.

Log lines (controller log, logger `ray.serve.voiceq_autoscaling`), one per change:

    scale event=up from=0 to=1 reason=min_jobs pending=5 processing=0 oldest_s=12.3 detail="..."
    scale store=unavailable holding=1 error="..."
    scale store=ok
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Mapping

from ray.serve.config import AutoscalingConfig, AutoscalingContext, AutoscalingPolicy
from ray.util import metrics

from deployments.connections import open_job_store
from voiceq.scaling import Decision, QueueSnapshot, ScalingConfig, ScalingState, decide
from voiceq.settings import Settings
from voiceq.store import JobStore

# A child of Serve's logger, so the lines land in the controller's log next to Serve's own
# autoscaling messages.
log = logging.getLogger("ray.serve.voiceq_autoscaling")

HISTORY = 64


def settings_to_kwargs(settings: Settings) -> dict[str, Any]:
    """Settings as JSON values for `policy_kwargs`, without secrets: Serve logs the policy's
    kwargs when it instantiates the policy and shows them in the deployment's config."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(settings):
        if not f.repr:  # secrets are declared repr=False
            continue
        value = getattr(settings, f.name)
        out[f.name] = str(value) if isinstance(value, Path) else value
    return out


def settings_from_kwargs(values: Mapping[str, Any]) -> Settings:
    """The inverse of `settings_to_kwargs`; secrets come from this process's environment."""
    try:
        base = Settings.from_env()
    except ValueError:  # a malformed variable on this node must not stop the policy
        base = Settings()
    known = {f.name: f for f in dataclasses.fields(Settings)}
    changes: dict[str, Any] = {}
    for name, value in values.items():
        f = known.get(name)
        if f is None or not f.repr:
            continue
        if value is not None and "Path" in str(f.type):
            value = Path(value)
        changes[name] = value
    return base.replace(**changes)


class JobQueueAutoscalingPolicy:
    """Serve class policy: replicas for the job store's queue. Pass it through
    `autoscaling_config(settings, scaling)`; Serve makes one instance per deployment version."""

    def __init__(
        self,
        settings: Mapping[str, Any] | None = None,
        scaling: Mapping[str, Any] | None = None,
        model: str | None = None,
        *,
        store: JobStore | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.settings = settings_from_kwargs(settings or {})
        # The model whose deployment this policy scales (None: the whole queue).
        self.model = model
        self.config = ScalingConfig.from_dict(scaling or {})
        self._store = store
        self._clock = clock or time.time
        self._state = ScalingState()
        self._snapshot: QueueSnapshot | None = None
        self._task: asyncio.Task | None = None
        self._read: asyncio.Future | None = None
        self._last_poll_started: float | None = None
        self._outage: str | None = None
        self._no_loop_warned = False
        self._last: Decision | None = None
        # Waking: a request queued at this deployment's handle (the ingress's wake on a
        # submission to an empty fleet) makes the policy read the store at once; until a reading
        # that started after the wake arrives, the fleet is held (Serve's cold-start path may
        # have just started a replica for the wake: an old, empty reading must not stop it).
        self._requests_seen = 0.0
        self._wake_at: float | None = None
        self._read_started_at: float | None = None
        self._snapshot_started_at: float | None = None
        #: The most recent decisions that changed the count or its reason, oldest first.
        self.decisions: deque[Decision] = deque(maxlen=HISTORY)
        # Exported by Ray with a `ray_` prefix, from the controller's node.
        self._desired_gauge = metrics.Gauge(
            "voiceq_scaling_desired_replicas", description="GPU inference replicas the queue policy wants",
            tag_keys=("deployment",))
        self._decisions_counter = metrics.Counter(
            "voiceq_scaling_decisions", description="Queue policy decisions that changed the count or its reason",
            tag_keys=("deployment", "direction", "reason"))

    # --- Serve's entry point --------------------------------------------------------------

    def __call__(self, ctx: AutoscalingContext) -> tuple[int, dict[str, Any]]:
        self._notice_wake(ctx)
        self._maybe_poll()
        # Serve's target, not the running replicas: a replica waiting for its droplet to boot
        # is not running yet, but it is wanted and paid for.
        current = int(ctx.target_num_replicas)
        if self.awaiting_wake_reading():
            return current, {"voiceq_waking": True}
        decision, self._state = decide(self._snapshot, current, self._state, self.config, now=self._clock())
        self._record(decision, ctx.deployment_name)
        return decision.desired, {"voiceq_last_decision": decision.to_dict()}

    async def wait_for_poll(self) -> None:
        """Wait for the queue reading in flight, if any (for tools and tests)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    @property
    def last_decision(self) -> Decision | None:
        return self._last

    @property
    def snapshot(self) -> QueueSnapshot | None:
        return self._snapshot

    # --- waking ---------------------------------------------------------------------------

    def _notice_wake(self, ctx: AutoscalingContext) -> None:
        requests = _requests(ctx)
        if requests > 0 and self._requests_seen <= 0:
            self._wake_at = self._clock()
            self._last_poll_started = None  # read the store now, not at the next interval
            log.info("scale wake requests=%g: reading the queue now", requests)
        self._requests_seen = requests

    def awaiting_wake_reading(self) -> bool:
        """True while the last wake has no reading of the store that started after it."""
        if self._wake_at is None:
            return False
        if self._clock() - self._wake_at > self.config.stale_after_s or (
                self._snapshot_started_at is not None and self._snapshot_started_at >= self._wake_at):
            self._wake_at = None
            return False
        return True

    # --- reading the queue ----------------------------------------------------------------

    def _maybe_poll(self) -> None:
        if self._task is not None and self._task.done():
            self._task = None
        if self._task is not None:
            return
        started = self._clock()
        last = self._last_poll_started
        # (A clock that stepped back, as wall clocks do, counts as time for a reading.)
        if last is not None and 0 <= started - last < self.config.poll_interval_s:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            if not self._no_loop_warned:
                log.warning("scale policy called outside an event loop; the queue is not read")
                self._no_loop_warned = True
            return
        self._last_poll_started = started
        self._task = loop.create_task(self._poll_once())

    async def _poll_once(self) -> None:
        loop = asyncio.get_running_loop()
        # One store call at a time: a read that outlives its timeout keeps running in its
        # thread, and the next poll waits on it rather than starting another.
        if self._read is None or self._read.done():
            self._read_started_at = self._clock()
            self._read = loop.run_in_executor(None, self._read_snapshot)
            self._read.add_done_callback(_consume_exception)
        read_started_at = self._read_started_at
        try:
            snapshot = await asyncio.wait_for(asyncio.shield(self._read), timeout=self.config.poll_timeout_s)
        except asyncio.TimeoutError:
            self._store_failed(f"no answer in {self.config.poll_timeout_s:g}s")
        except Exception as err:  # whatever the store raises, the controller must go on
            self._store_failed(f"{type(err).__name__}: {err}")
        else:
            self._snapshot = snapshot
            self._snapshot_started_at = read_started_at
            if self._outage is not None:
                log.info("scale store=ok")
                self._outage = None

    def _read_snapshot(self) -> QueueSnapshot:
        if self._store is None:
            self._store = open_job_store(self.settings)
        stats = self._store.queue_stats()  # running counts, never a count over the table
        return QueueSnapshot.from_stats(stats, now=self._clock(), model=self.model)

    def _store_failed(self, error: str) -> None:
        if self._outage is None:
            held = self._last.desired if self._last is not None else "current"
            log.warning('scale store=unavailable holding=%s error="%s"', held, error.replace('"', "'"))
        self._outage = error

    # --- recording ------------------------------------------------------------------------

    def _record(self, decision: Decision, deployment: str) -> None:
        """Keep and log each decision that changes the count or the reason for it; the control
        loop calls ten times a second, and an unchanged decision is not news."""
        last, self._last = self._last, decision
        if last is not None and (last.desired, last.current, last.code) == (
                decision.desired, decision.current, decision.code):
            return
        self.decisions.append(decision)
        self._desired_gauge.set(decision.desired, tags={"deployment": deployment})
        self._decisions_counter.inc(1, tags={"deployment": deployment, "direction": decision.direction,
                                             "reason": decision.code.value})
        line = f'{decision.log_line()} detail="{decision.reason}"'
        # Holds are the common case (and an outage is logged once by _store_failed).
        log.log(logging.DEBUG if decision.direction == "hold" else logging.INFO, line)


def _requests(ctx: AutoscalingContext) -> float:
    """Requests queued at or running on the deployment's handles (the ingress's wakes)."""
    try:
        value = ctx.total_num_requests
        return float(value() if callable(value) else value or 0.0)
    except Exception:  # noqa: BLE001 - a metric Serve cannot compute is no wake
        return 0.0


def _consume_exception(fut: asyncio.Future) -> None:
    # A read that failed after its poll gave up on it: its error was (or will be) reported by
    # the poll; retrieve it so asyncio does not log "exception was never retrieved".
    if not fut.cancelled():
        fut.exception()


def autoscaling_config(settings: Settings, scaling: ScalingConfig | None = None,
                       model: str | None = None) -> AutoscalingConfig:
    """The inference deployment's `autoscaling_config`: replicas from the job queue.

    Serve's own delays are zero because the policy owns timing (`idle_s`, `scale_in_s`); with
    Serve's defaults (upscale 30 s, downscale 600 s) a GPU would idle ten more minutes after the
    policy let it go. `min_replicas` is the warm standby, so Serve keeps it even if the store
    cannot be read; `max_replicas` is the fleet cap. Serve goes to zero only from one replica,
    so a fleet of n goes n -> 1 -> 0 on consecutive control-loop ticks (0.1 s apart).
    """
    scaling = scaling if scaling is not None else ScalingConfig.from_env()
    return policy_config(JobQueueAutoscalingPolicy, min_replicas=scaling.warm_standby,
                         max_replicas=scaling.max_replicas,
                         kwargs={"settings": settings_to_kwargs(settings), "scaling": scaling.to_dict(),
                                 **({"model": model} if model is not None else {})})


def policy_config(policy: type, *, min_replicas: int, max_replicas: int,
                  kwargs: dict[str, Any]) -> AutoscalingConfig:
    """An `autoscaling_config` in which our policy alone decides: Serve's own delays are zero,
    since the policy already waits for what it means to wait for."""
    return AutoscalingConfig(
        # No initial_replicas: Serve would reset the fleet to it on every redeploy.
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        upscale_delay_s=0.0,
        downscale_delay_s=0.0,
        downscale_to_zero_delay_s=0.0,
        policy=AutoscalingPolicy(policy_function=policy, policy_kwargs=kwargs),
    )
