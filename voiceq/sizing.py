"""Which GPU size, and how many: the pure choice over a fleet of node types.

The cluster offers several GPU node types (cluster_configs/digitalocean.yaml), each with a list
price and a configured throughput (jobs per second at its best batch size). A backlog is
cheapest on the type with the lowest cost per job that still clears it within the wait target:
a trickle on a small GPU (its idle tail dominates, so $/hour decides), a burst on a large one
(throughput decides).

    choose_size(backlog, gpus, ...)  -> SizeChoice(gpu, replicas, clear_s, cost_per_job, reason)
    plan_fleet(snapshot, current, state, config, gpus, now) -> (FleetDecision, ScalingState)

`plan_fleet` keeps `voiceq.scaling.decide`'s rules for when to start from zero, when to hold and
when to let the fleet go (idle_s, the store being unreadable, the warm standby); with a fleet
of sizes, how much to add and what is surplus follow the wait target instead of
`jobs_per_replica`:

- from zero: `choose_size(backlog)`;
- busy: the jobs the running fleet cannot clear within `wait_target_s` are sized by
  `choose_size` and added (up to `max_replicas` in all);
- the priciest replica whose removal still clears the backlog within the target is surplus;
  after `scale_in_s` it goes.

A replica's cost counts its cold start, its share of the backlog, the idle tail (`idle_s` plus
Ray's idle timeout) and the billing model's rounding (`voiceq.billing`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from voiceq.billing import Billing
from voiceq.scaling import Decision, QueueSnapshot, Reason, ScalingConfig, ScalingState, decide

# Ray's idle_timeout_minutes that the policy's idle_s is chosen for (cluster_configs/digitalocean.yaml).
NODE_IDLE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class GpuType:
    """One GPU node type of the cluster."""

    name: str  # the node type's name in available_node_types (also its Ray resource)
    size: str  # the droplet size slug
    hourly_usd: float
    jobs_per_s: float  # throughput at its best batch size
    cold_start_s: float = 240.0  # create -> booted -> model loaded

    def __post_init__(self) -> None:
        if self.hourly_usd < 0 or self.jobs_per_s <= 0 or self.cold_start_s < 0:
            raise ValueError(f"GPU type {self.name}: price >= 0, jobs_per_s > 0 and cold_start_s >= 0 required")

    @property
    def usd_per_job_busy(self) -> float:
        return self.hourly_usd / 3600.0 / self.jobs_per_s

    @property
    def resource(self) -> str:
        """The Ray resource only this node type offers (replicas of this size ask for it)."""
        return resource_name(self.name)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resource_name(node_type: str) -> str:
    return f"voiceq_node_{node_type}"


@dataclass(frozen=True)
class SizeChoice:
    gpu: GpuType
    replicas: int
    clear_s: float  # until the last job of the backlog is done, cold start included
    cost_usd: float
    cost_per_job: float
    meets_target: bool
    reason: str


def _candidate(gpu: GpuType, n: int, backlog: int, tail_s: float, billing: Billing) -> tuple[float, float]:
    clear_s = gpu.cold_start_s + backlog / (n * gpu.jobs_per_s)
    return clear_s, n * billing.cost(clear_s + tail_s, gpu.hourly_usd)


def choose_size(backlog: int, gpus: Sequence[GpuType], *, wait_target_s: float, idle_s: float,
                billing: Billing, max_replicas: int, node_idle_timeout_s: float = NODE_IDLE_TIMEOUT_S) -> SizeChoice:
    """The GPU type and count that clear `backlog` jobs within `wait_target_s` at the lowest
    cost per job; if none can, the fastest (ties: the cheaper)."""
    if not gpus:
        raise ValueError("no GPU types to choose from")
    if max_replicas < 1:
        raise ValueError("max_replicas must be at least 1")
    jobs = max(1, backlog)
    tail_s = idle_s + node_idle_timeout_s
    options: list[tuple[GpuType, int, float, float]] = []
    for gpu in gpus:
        for n in range(1, max_replicas + 1):
            clear_s, cost = _candidate(gpu, n, jobs, tail_s, billing)
            options.append((gpu, n, clear_s, cost))
    meeting = [o for o in options if o[2] <= wait_target_s]
    if meeting:
        best = min(meeting, key=lambda o: (o[3], o[2], o[1]))
        runner_up = min((o for o in meeting if o[0].name != best[0].name), key=lambda o: (o[3], o[2]), default=None)
        why = (f"{best[0].name} x{best[1]}: cheapest per job meeting the {wait_target_s:.0f}s wait target"
               f" (${best[3] / jobs:.5f}/job, {jobs} job(s) done in ~{best[2]:.0f}s, ${best[0].hourly_usd:.2f}/h,"
               f" {best[0].jobs_per_s:g} jobs/s)")
        if runner_up is not None:
            why += f"; next: {runner_up[0].name} x{runner_up[1]} at ${runner_up[3] / jobs:.5f}/job"
        met = True
    else:
        best = min(options, key=lambda o: (o[2], o[3]))
        why = (f"{best[0].name} x{best[1]}: no size clears {jobs} job(s) within the {wait_target_s:.0f}s wait"
               f" target; fastest (~{best[2]:.0f}s, ${best[3] / jobs:.5f}/job)")
        met = False
    gpu, n, clear_s, cost = best
    return SizeChoice(gpu=gpu, replicas=n, clear_s=clear_s, cost_usd=cost, cost_per_job=cost / jobs,
                      meets_target=met, reason=why)


@dataclass(frozen=True)
class FleetDecision:
    """Replicas per GPU type, and why (`decision` is the fleet-wide count and reason)."""

    desired: Mapping[str, int]
    current: Mapping[str, int]
    decision: Decision
    size: str | None = None  # the type a start or scale-out chose

    def log_line(self) -> str:
        fleet = ",".join(f"{name}:{count}" for name, count in sorted(self.desired.items()))
        size = f" size={self.size}" if self.size else ""
        return f"{self.decision.log_line()} fleet={fleet}{size}"

    def to_dict(self) -> dict[str, Any]:
        return {**self.decision.to_dict(), "desired_by_type": dict(self.desired),
                "current_by_type": dict(self.current), "size": self.size}


def _rate(counts: Mapping[str, int], by_name: Mapping[str, GpuType]) -> float:
    return sum(n * by_name[name].jobs_per_s for name, n in counts.items() if name in by_name)


def plan_fleet(snapshot: QueueSnapshot | None, current: Mapping[str, int], state: ScalingState,
               config: ScalingConfig, gpus: Sequence[GpuType], *, now: float,
               billing: Billing | None = None) -> tuple[FleetDecision, ScalingState]:
    """Replicas per GPU type for the queue now, and the state for the next call."""
    if not gpus:
        raise ValueError("no GPU types to plan for")
    billing = billing or config.billing
    by_name = {g.name: g for g in gpus}
    now_counts = {g.name: max(0, int(current.get(g.name, 0))) for g in gpus}
    total = sum(now_counts.values())
    base, new_state = decide(snapshot, total, state, config, now=now)
    inflow = state.inflow_per_s
    if snapshot is not None and snapshot.taken_at != state.last_backlog_at:
        inflow = _inflow(state, snapshot, _rate(now_counts, by_name))
        new_state = dataclasses.replace(new_state, last_backlog=snapshot.backlog,
                                        last_backlog_at=snapshot.taken_at, inflow_per_s=inflow)
    else:
        new_state = dataclasses.replace(new_state, last_backlog=state.last_backlog,
                                        last_backlog_at=state.last_backlog_at, inflow_per_s=inflow)

    def result(desired: Mapping[str, int], code: Reason, reason: str, size: str | None = None,
               surplus_since: float | None = None) -> tuple[FleetDecision, ScalingState]:
        want = sum(desired.values())
        decision = dataclasses.replace(base, desired=want, code=code, reason=reason)
        st = dataclasses.replace(new_state, surplus_since=surplus_since,
                                 last_change_at=now if dict(desired) != now_counts else state.last_change_at)
        return FleetDecision(desired=dict(desired), current=now_counts, decision=decision, size=size), st

    cheapest_hourly = min(gpus, key=lambda g: (g.hourly_usd, -g.jobs_per_s))
    if base.desired == total and base.code in (Reason.STORE_UNAVAILABLE, Reason.COOLDOWN, Reason.BELOW_THRESHOLD,
                                               Reason.IDLE, Reason.WARM_STANDBY, Reason.PREPAID):
        return result(now_counts, base.code, base.reason)
    if base.code in (Reason.IDLE, Reason.IDLE_TIMEOUT, Reason.WARM_STANDBY) and base.desired != total:
        # Down to (or up to) the standby; the standby lives on the cheapest GPU per hour.
        desired = {name: 0 for name in now_counts}
        desired[cheapest_hourly.name] = base.desired
        if base.desired > total:
            desired = {**now_counts, cheapest_hourly.name: now_counts[cheapest_hourly.name] + base.desired - total}
        return result(desired, base.code, base.reason + f" (standby on {cheapest_hourly.name})" * bool(base.desired))

    assert snapshot is not None  # every code past this point comes from a fresh reading
    # The jobs to clear within the wait target: those waiting and those still coming meanwhile.
    backlog = snapshot.backlog
    expected = backlog + int(inflow * config.wait_target_s)
    if total == 0:
        if base.desired == 0:
            return result(now_counts, base.code, base.reason)
        choice = choose_size(expected, gpus, wait_target_s=config.wait_target_s, idle_s=config.idle_s,
                             billing=billing, max_replicas=config.max_replicas)
        desired = {**now_counts, choice.gpu.name: choice.replicas}
        return result(desired, base.code, f"{base.reason}; {choice.reason}", size=choice.gpu.name)

    rate = _rate(now_counts, by_name)
    uncovered = expected - rate * config.wait_target_s
    if uncovered > 0:
        room = config.max_replicas - total
        if room <= 0:
            return result(now_counts, Reason.MAX_REPLICAS,
                          f"backlog {backlog} outruns {total} replica(s) ({rate:g} jobs/s) within the"
                          f" {config.wait_target_s:.0f}s wait target; capped at max_replicas={config.max_replicas}")
        choice = choose_size(int(uncovered + 0.999), gpus, wait_target_s=config.wait_target_s, idle_s=config.idle_s,
                             billing=billing, max_replicas=room)
        desired = {**now_counts, choice.gpu.name: now_counts[choice.gpu.name] + choice.replicas}
        return result(desired, Reason.BACKLOG,
                      f"backlog {backlog} (+{inflow:.2f} jobs/s coming): {int(uncovered + 0.999)} job(s) beyond"
                      f" what {total} replica(s)"
                      f" ({rate:g} jobs/s) clear within {config.wait_target_s:.0f}s; {choice.reason}",
                      size=choice.gpu.name)

    if total > 1:
        # The priciest replica per hour, if the rest still clear the backlog within the target.
        priciest = max((by_name[n] for n, c in now_counts.items() if c > 0), key=lambda g: g.hourly_usd)
        fewer = {**now_counts, priciest.name: now_counts[priciest.name] - 1}
        if expected <= _rate(fewer, by_name) * config.wait_target_s:
            since = state.surplus_since if state.surplus_since is not None else now
            if now - since >= config.scale_in_s:
                return result(fewer, Reason.SCALE_IN,
                              f"backlog {backlog} clears within {config.wait_target_s:.0f}s without one"
                              f" {priciest.name} for {now - since:.0f}s (scale_in_s={config.scale_in_s:.0f})")
            return result(now_counts, Reason.SURPLUS,
                          f"backlog {backlog} would clear without one {priciest.name}, for {now - since:.0f}s"
                          f" of scale_in_s={config.scale_in_s:.0f}", surplus_since=since)
    return result(now_counts, Reason.BUSY, f"backlog {backlog} on {total} replica(s) ({rate:g} jobs/s)")


def _inflow(state: ScalingState, snapshot: QueueSnapshot, fleet_rate: float) -> float:
    """Arrivals per second, smoothed: the backlog's growth plus what the fleet cleared meanwhile
    (at most its throughput, and only while it had work)."""
    if state.last_backlog is None or state.last_backlog_at is None:
        return 0.0
    dt = snapshot.taken_at - state.last_backlog_at
    if dt <= 0:
        return state.inflow_per_s
    cleared = fleet_rate * dt if state.last_backlog > 0 else 0.0
    cleared = min(cleared, state.last_backlog + max(0, snapshot.backlog - state.last_backlog))
    observed = max(0.0, (snapshot.backlog - state.last_backlog + cleared) / dt)
    # An exponential average over about a minute: a burst shows within a poll or two, a lone
    # job does not make a trend.
    weight = min(1.0, dt / 60.0)
    return (1 - weight) * state.inflow_per_s + weight * observed


def gpu_types_from_cluster_config(cluster: Mapping[str, Any], *, default_cold_start_s: float = 240.0) -> list[GpuType]:
    """The GPU node types of a Ray cluster config (`available_node_types` with a GPU resource).

    Each needs ``node_config.jobs_per_s``; the price is ``provider.prices[size]`` or
    ``node_config.hourly_usd``; ``node_config.cold_start_s`` is optional."""
    prices = dict((cluster.get("provider") or {}).get("prices") or {})
    out = []
    for name, node_type in (cluster.get("available_node_types") or {}).items():
        if float((node_type.get("resources") or {}).get("GPU", 0)) <= 0:
            continue
        node = node_type.get("node_config") or {}
        size = str(node.get("size") or "")
        price = prices.get(size, node.get("hourly_usd"))
        if price is None or node.get("jobs_per_s") is None:
            raise ValueError(f"GPU node type {name}: node_config needs jobs_per_s and hourly_usd"
                             " (or provider.prices for its size)")
        out.append(GpuType(name=str(name), size=size, hourly_usd=float(price), jobs_per_s=float(node["jobs_per_s"]),
                           cold_start_s=float(node.get("cold_start_s", default_cold_start_s))))
    if not out:
        raise ValueError("the cluster config has no GPU node types")
    return out


def billing_from_cluster_config(cluster: Mapping[str, Any]) -> Billing | None:
    """``provider.billing`` (per_second, hourly or INCREMENT_S/MINIMUM_S), if set."""
    value = (cluster.get("provider") or {}).get("billing")
    return Billing.named(str(value)) if value else None
