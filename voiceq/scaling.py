"""How many GPU inference replicas the queue needs: the pure decision, no I/O.

Each inference replica needs a whole GPU, and in the DigitalOcean cluster a GPU is a droplet
that Ray's autoscaler creates when a replica cannot be placed and destroys once it has idled,
billed every second it exists. So the replica count decided here *is* the GPU fleet.

    queue snapshot ─▶ decide(snapshot, replicas, state, config, now) ─▶ Decision(desired, code, reason)

The rules, in order:

1. No fresh snapshot (the store is unreachable): hold the fleet as it is. Scaling up blind
   costs money; scaling down blind strands jobs.
2. From zero: start only when at least `min_jobs_to_start` jobs wait, or the oldest has waited
   `max_wait_s` (the seed's "queue multiple jobs before starting a droplet"). A droplet takes
   minutes to boot, so starting it for each job as it comes is what makes GPUs expensive.
3. Size for the backlog: one replica per `jobs_per_replica` waiting or running jobs, capped at
   `max_replicas`. Scale-out is immediate; scale-in waits until the surplus has lasted
   `scale_in_s`, so a backlog hovering at a boundary does not start and stop droplets.
4. Back to `warm_standby` (default none) only after the queue has been empty for `idle_s`.
   Ray's autoscaler then destroys the droplet after the cluster's `idle_timeout_minutes`, so
   a GPU idles `idle_s` plus that timeout in all. Every second of it is billed; every cold
   start costs a user minutes. benchmarks/cost_sim.py weighs the two.

`current` is the replica count Serve is working towards (its target), not the replicas already
running: while a droplet boots the replica it was made for is not running yet, but it is paid for.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import os
from dataclasses import dataclass
from typing import Any, Mapping

from voiceq.billing import Billing

# Ray's autoscaler destroys a droplet this long after its replica went (idle_timeout_minutes),
# and the policy polls in between: an idle GPU is let go this long before its paid time ends.
RELEASE_LEAD_S = 90.0


class Reason(str, enum.Enum):
    """Why the fleet has the size it has (a stable code for logs and metrics)."""

    IDLE = "idle"  # nothing waiting: no GPU (or only the warm standby)
    BELOW_THRESHOLD = "below_threshold"  # jobs wait, but too few and too recently to start a GPU
    MIN_JOBS = "min_jobs"  # start: enough jobs wait
    MAX_WAIT = "max_wait"  # start: the oldest job has waited long enough
    BACKLOG = "backlog"  # more replicas: the backlog outgrew the fleet
    MAX_REPLICAS = "max_replicas"  # the backlog wants more than the cap allows
    BUSY = "busy"  # hold: the fleet fits the work in hand
    SURPLUS = "surplus"  # hold: fewer replicas would do, not yet for long enough
    SCALE_IN = "scale_in"  # fewer replicas: the surplus lasted scale_in_s
    COOLDOWN = "cooldown"  # hold: the queue is empty, not yet for idle_s
    IDLE_TIMEOUT = "idle_timeout"  # down to the standby: the queue stayed empty for idle_s
    WARM_STANDBY = "warm_standby"  # up to the standby floor
    STORE_UNAVAILABLE = "store_unavailable"  # hold: no fresh view of the queue
    PREPAID = "prepaid"  # hold: idle, but the GPU's current billing increment is already paid


@dataclass(frozen=True)
class ScalingConfig:
    """The policy's knobs. Defaults come from benchmarks/cost_sim.py (see its report)."""

    # Start a GPU worker when this many jobs wait, or when the oldest waiting job has waited
    # this long (seconds). By default a GPU starts for the first job: a start held back adds its
    # wait to that job's latency one for one, and in the simulator holding for 3 jobs or 30 s
    # saved under 2% of the cost for 30 s more p95. Raise them where latency matters less.
    min_jobs_to_start: int = 1
    max_wait_s: float = 0.0
    # Waiting plus running jobs per replica before another GPU is worth starting: about what one
    # GPU clears (batched, ~1 s/job) while another would still be booting (~4 min); a GPU that
    # comes up after the backlog is gone is pure cost.
    jobs_per_replica: int = 200
    # The fleet cap: never more GPUs than this.
    max_replicas: int = 4
    # Replicas kept even when the queue is empty (each one is a GPU billed around the clock).
    warm_standby: int = 0
    # Scale down to the standby once the queue has been empty this long. The droplet itself goes
    # when Ray's autoscaler has seen it idle for the cluster's idle_timeout_minutes (1 minute is
    # what this default is chosen for), so a GPU idles idle_s + 1 minute in all: about one cold
    # start (boot plus model load, ~4 min), the classic break-even for keeping an idle machine.
    # In the simulator the seed's 5 minutes (plus Ray's minute) cost 1-4% more than the seed
    # itself; 180 s costs 2-11% less, with a better p95 on bursty and daily traffic and a p95
    # 5 s (2%) worse on a steady trickle, where p95 is a cold start and ours has two polling
    # hops (this poll, Ray's autoscaler loop) that the seed's direct API call does not.
    idle_s: float = 180.0
    # A surplus of replicas must last this long before the fleet shrinks (but not to zero:
    # that is idle_s's job).
    scale_in_s: float = 120.0
    # How often the Serve policy reads the queue, how long one read may take, and how old the
    # last good read may be before the policy stops trusting it and holds the fleet.
    poll_interval_s: float = 5.0
    poll_timeout_s: float = 10.0
    stale_after_s: float = 60.0
    # With a fleet of GPU sizes (voiceq.sizing): the wait a backlog should clear within, cold
    # start included; the size choice meets it at the lowest cost per job.
    wait_target_s: float = 300.0
    # How the cloud bills a GPU's lifetime (voiceq.billing): DigitalOcean since January 2026,
    # per second with a 60 s minimum; hourly is 3600/3600. An idle GPU whose current increment
    # is paid for is kept until the increment nearly ends.
    billing_increment_s: float = 1.0
    billing_minimum_s: float = 60.0

    @property
    def billing(self) -> Billing:
        return Billing(self.billing_increment_s, self.billing_minimum_s)

    def __post_init__(self) -> None:
        if self.min_jobs_to_start < 1:
            raise ValueError("min_jobs_to_start must be at least 1")
        if self.jobs_per_replica < 1:
            raise ValueError("jobs_per_replica must be at least 1")
        if self.max_replicas < 1:
            raise ValueError("max_replicas must be at least 1")
        if not 0 <= self.warm_standby <= self.max_replicas:
            raise ValueError("warm_standby must be between 0 and max_replicas")
        for name in ("max_wait_s", "idle_s", "scale_in_s", "billing_minimum_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        for name in ("poll_interval_s", "poll_timeout_s", "stale_after_s", "wait_target_s", "billing_increment_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScalingConfig:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(data) - set(fields)
        if unknown:
            raise ValueError(f"unknown scaling settings: {sorted(unknown)}")
        return cls(**{k: _coerce(fields[k], v) for k, v in data.items()})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ScalingConfig:
        """`VOICEQ_SCALE_<FIELD>` variables (for example VOICEQ_SCALE_MAX_REPLICAS=2), then overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f"VOICEQ_SCALE_{f.name.upper()}")
            if raw is not None and raw.strip() != "":
                values[f.name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(values)


def _coerce(f: dataclasses.Field, value: Any) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        if kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if kind == "float":
            return float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"scaling setting {f.name}={value!r} is not a valid {kind}") from err
    return value


@dataclass(frozen=True)
class QueueSnapshot:
    """The queue as the store reported it at `taken_at` (seconds since the epoch)."""

    pending: int
    processing: int
    oldest_pending_age_s: float | None
    taken_at: float

    @property
    def backlog(self) -> int:
        return self.pending + self.processing

    @classmethod
    def from_stats(cls, stats: Any, *, now: float, model: str | None = None) -> QueueSnapshot:
        """From a `voiceq.store.JobStats`: the whole queue, or one model's jobs (each model's
        inference deployment scales on its own queue)."""
        if model is not None:
            pending, processing = stats.pending_for(model), stats.processing_for(model)
            oldest = stats.oldest_pending_for(model)
        else:
            pending, processing, oldest = stats.pending, stats.processing, stats.oldest_pending_created_at
        age = max(0.0, now - oldest) if (oldest is not None and pending) else None
        return cls(pending=pending, processing=processing, oldest_pending_age_s=age, taken_at=now)


@dataclass(frozen=True)
class ScalingState:
    """What the policy remembers between decisions."""

    # When the queue was last seen with work in it (waiting or running).
    last_busy_at: float | None = None
    # Since when fewer replicas would do (None: no surplus now).
    surplus_since: float | None = None
    # When the desired count last changed, and to what.
    last_change_at: float | None = None
    # Since when the fleet has had GPUs (None: none wanted), for the billing increment.
    fleet_since: float | None = None
    # The last backlog seen and when, and the estimated arrival rate (jobs/s) from its growth:
    # a fleet of sizes sizes for the jobs still coming, not only those already waiting.
    last_backlog: int | None = None
    last_backlog_at: float | None = None
    inflow_per_s: float = 0.0


@dataclass(frozen=True)
class Decision:
    desired: int
    current: int
    code: Reason
    reason: str
    at: float
    pending: int | None = None
    processing: int | None = None
    oldest_pending_age_s: float | None = None

    @property
    def direction(self) -> str:
        if self.desired > self.current:
            return "up"
        if self.desired < self.current:
            return "down"
        return "hold"

    def log_line(self) -> str:
        """`scale event=up from=0 to=1 reason=min_jobs pending=5 processing=0 oldest_s=12.3`"""
        oldest = "-" if self.oldest_pending_age_s is None else f"{self.oldest_pending_age_s:.1f}"
        pending = "-" if self.pending is None else str(self.pending)
        processing = "-" if self.processing is None else str(self.processing)
        return (
            f"scale event={self.direction} from={self.current} to={self.desired} reason={self.code.value}"
            f" pending={pending} processing={processing} oldest_s={oldest}"
        )

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["code"] = self.code.value
        out["direction"] = self.direction
        return out


def decide(
    snapshot: QueueSnapshot | None,
    current: int,
    state: ScalingState,
    config: ScalingConfig,
    *,
    now: float,
) -> tuple[Decision, ScalingState]:
    """The replicas the queue needs now, why, and the state to pass to the next call."""
    current = max(0, current)
    floor = config.warm_standby

    if snapshot is None or now - snapshot.taken_at > config.stale_after_s:
        seen = "no reading yet" if snapshot is None else f"last reading {now - snapshot.taken_at:.0f}s old"
        return _decision(current, current, Reason.STORE_UNAVAILABLE,
                         f"job store unavailable ({seen}); holding {current} replica(s)", now, snapshot), state

    backlog = snapshot.backlog
    busy = backlog > 0
    # Idleness counts from the last reading that showed work; a policy that starts with
    # replicas and an empty queue counts from its first reading.
    if busy:
        last_busy_at = max(snapshot.taken_at, state.last_busy_at or snapshot.taken_at)
    else:
        last_busy_at = state.last_busy_at if state.last_busy_at is not None else snapshot.taken_at
    need = math.ceil(backlog / config.jobs_per_replica)
    capped = min(need, config.max_replicas)

    def done(desired: int, code: Reason, reason: str, *,
             surplus_since: float | None = None) -> tuple[Decision, ScalingState]:
        decision = _decision(desired, current, code, reason, now, snapshot)
        if desired == 0:
            fleet_since = None
        elif current == 0 or state.fleet_since is None:
            fleet_since = state.fleet_since if (current and state.fleet_since is not None) else now
        else:
            fleet_since = state.fleet_since
        return decision, ScalingState(
            last_busy_at=last_busy_at,
            surplus_since=surplus_since,
            last_change_at=now if desired != current else state.last_change_at,
            fleet_since=fleet_since,
        )

    if current < floor:
        return done(max(floor, capped), Reason.WARM_STANDBY, f"keeping a warm standby of {floor} replica(s)")

    if not busy:
        if current <= floor:
            code = Reason.WARM_STANDBY if floor else Reason.IDLE
            return done(floor, code, "queue empty" + (f"; warm standby of {floor}" if floor else ""))
        idle_for = max(0.0, now - last_busy_at)
        if idle_for >= config.idle_s:
            since = state.fleet_since if state.fleet_since is not None else last_busy_at
            paid = config.billing.paid_ahead_s(now - since)
            if paid > RELEASE_LEAD_S:
                return done(current, Reason.PREPAID,
                            f"queue empty for {idle_for:.0f}s, but {paid:.0f}s of the GPU's billing increment"
                            f" ({config.billing.describe()}) are paid; keeping {current}")
            return done(floor, Reason.IDLE_TIMEOUT,
                        f"queue empty for {idle_for:.0f}s (idle_s={config.idle_s:g}); down to {floor}")
        return done(current, Reason.COOLDOWN,
                    f"queue empty for {idle_for:.0f}s of idle_s={config.idle_s:g}; keeping {current}")

    if current == 0:
        oldest = snapshot.oldest_pending_age_s or 0.0
        start = max(1, capped)
        if snapshot.pending >= config.min_jobs_to_start:
            return done(start, Reason.MIN_JOBS,
                        f"{snapshot.pending} job(s) waiting >= min_jobs_to_start={config.min_jobs_to_start}")
        if snapshot.pending > 0 and oldest >= config.max_wait_s:
            return done(start, Reason.MAX_WAIT,
                        f"oldest job waited {oldest:.0f}s >= max_wait_s={config.max_wait_s:.0f}")
        if snapshot.pending == 0:
            # Jobs "processing" with no replica are held by a worker that is gone; their leases
            # expire and they return to the queue, where the rules above apply.
            return done(0, Reason.IDLE, f"{snapshot.processing} job(s) under lease, none waiting")
        return done(0, Reason.BELOW_THRESHOLD,
                    f"{snapshot.pending} job(s) waiting (start at {config.min_jobs_to_start}), oldest"
                    f" {oldest:.0f}s (start at {config.max_wait_s:.0f}s)")

    if need > current:
        if current >= config.max_replicas:
            return done(current, Reason.MAX_REPLICAS,
                        f"backlog {backlog} wants {need} replica(s); capped at max_replicas={config.max_replicas}")
        code = Reason.BACKLOG if need <= config.max_replicas else Reason.MAX_REPLICAS
        return done(capped, code,
                    f"backlog {backlog} / jobs_per_replica={config.jobs_per_replica} -> {need} replica(s)"
                    + (f", capped at {config.max_replicas}" if need > config.max_replicas else ""))

    target = max(need, 1, floor)
    if target < current:
        since = state.surplus_since if state.surplus_since is not None else now
        if now - since >= config.scale_in_s:
            return done(target, Reason.SCALE_IN,
                        f"backlog {backlog} needs {target} replica(s) for {now - since:.0f}s"
                        f" (scale_in_s={config.scale_in_s:.0f})")
        return done(current, Reason.SURPLUS,
                    f"backlog {backlog} needs {target} replica(s) for {now - since:.0f}s of"
                    f" scale_in_s={config.scale_in_s:.0f}; keeping {current}", surplus_since=since)

    return done(current, Reason.BUSY, f"backlog {backlog} on {current} replica(s)")


def _decision(desired: int, current: int, code: Reason, reason: str, now: float,
              snapshot: QueueSnapshot | None) -> Decision:
    return Decision(
        desired=desired,
        current=current,
        code=code,
        reason=reason,
        at=now,
        pending=None if snapshot is None else snapshot.pending,
        processing=None if snapshot is None else snapshot.processing,
        oldest_pending_age_s=None if snapshot is None else snapshot.oldest_pending_age_s,
    )
