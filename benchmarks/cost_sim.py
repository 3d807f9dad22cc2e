"""What GPUs cost under each scaling policy: a discrete-event simulation of job traces.

    python benchmarks/cost_sim.py [--hours 24] [--seed 7] [--boot-s 210] [--model-load-s 30] ...

Replays job arrival traces (steady, bursty, daily cycle, a launch burst; generated from a seed,
so every run prints the same table) through three ways of running the GPU fleet and prints, per
trace, the cost per 1,000 jobs, p50/p95 job latency (submitted -> completed), GPU-hours and
droplet starts per size:

- always-on:  one MI300X droplet for the whole trace, pulling batches like our workers do.
- seed:       the seed's design. A job's submission starts the droplet if none is up; its worker
              polls `getPendingJobs(limit=10)` every 5 s and runs them one at a time (no
              batching); the droplet goes after 5 idle minutes. The seed keeps one droplet
              (DO_DROPLET_ID) and "shuts it down", and DigitalOcean bills a powered-off droplet
              like a running one, so as written it costs what always-on costs. The simulated seed
              is the generous reading: stopping destroys the droplet and ends its bill.
              Its droplet is the seed's MI300X.
- ours:       the real `voiceq.sizing.plan_fleet` (the size choice over the cluster config's
              GPU node types, on `voiceq.scaling.decide`'s rules), called every poll interval and
              at once when a job is submitted to an empty fleet (the wake the ingress sends),
              sets the replicas per GPU size; a replica that cannot be placed makes Ray's
              autoscaler create a droplet of its size (boot + model load), and a droplet left
              without a replica is destroyed after the cluster's idle timeout. Replicas pull up to
              `max_batch_size` jobs per batch, as `voiceq.worker.Worker` does.

Service times: a batch of n jobs takes `batch_fixed_s + per_job_s * n` on one GPU. The defaults
come from published Chatterbox numbers (FACTS.md): upstream runs about 2.75x faster than real
time on an RTX 3090 at batch 1, and a batched S3Gen reported 5.25x the throughput for 10 prompts;
for an `--audio-s` clip (default 8 s) that gives t1 = audio_s / 2.75 and t10 = 10 * t1 / 5.25,
solved for the two coefficients, plus `--io-s` per job (download, watermark, MP3, upload). No
MI300X numbers are public. Each GPU node type in cluster_configs/digitalocean.yaml has a
configured throughput (`jobs_per_s` at its best batch); its batch times are the 3090 model's,
scaled so that a full batch runs at that throughput. Pass `--batch-speedup-10 1` to see the
engine without batching gains.

Billing: each droplet's lifetime (booting, busy and idle) at its size's $/h, rounded as the
billing model says (`provider.billing` in the cluster config: per second with a 60 s minimum
since January 2026; `--billing hourly` for the old way). The CPU head node is the same in every
column and left out.

Last line: `worst_ours_vs_seed_cost=<ratio>`, the highest ours/seed cost ratio over the traces.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import math
import random
import sys
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from voiceq.billing import Billing  # noqa: E402
from voiceq.scaling import QueueSnapshot, ScalingConfig, ScalingState  # noqa: E402
from voiceq.settings import Settings  # noqa: E402
from voiceq.sizing import GpuType, billing_from_cluster_config, gpu_types_from_cluster_config, plan_fleet  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
HOUR = 3600.0
# The cluster's idle_timeout_minutes that ScalingConfig.idle_s is chosen for (1 minute): the
# policy decides when a GPU has idled long enough; Ray's timeout only clears away the droplet.
ASSUMED_NODE_IDLE_TIMEOUT_S = 60.0


# --- models ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceModel:
    """Seconds for one GPU to run a batch of n jobs: fixed + per_job * n."""

    batch_fixed_s: float
    per_job_s: float
    max_batch_size: int

    def batch_s(self, n: int) -> float:
        return self.batch_fixed_s + self.per_job_s * n

    @property
    def best_jobs_per_s(self) -> float:
        return self.max_batch_size / self.batch_s(self.max_batch_size)

    def on(self, gpu: GpuType) -> ServiceModel:
        """This model's batch times on `gpu`: scaled so a full batch runs at its jobs_per_s."""
        k = gpu.jobs_per_s / self.best_jobs_per_s
        return replace(self, batch_fixed_s=self.batch_fixed_s / k, per_job_s=self.per_job_s / k)

    @classmethod
    def from_published(cls, *, audio_s: float, realtime_factor: float, speedup_10: float, io_s: float,
                       max_batch_size: int) -> ServiceModel:
        t1 = audio_s / realtime_factor
        t10 = 10 * t1 / speedup_10
        per_job = (t10 - t1) / 9
        fixed = t1 - per_job
        return cls(batch_fixed_s=fixed, per_job_s=per_job + io_s, max_batch_size=max_batch_size)


@dataclass(frozen=True)
class FleetModel:
    boot_s: float  # droplet create -> booted, Ray worker joined (or the seed's worker started)
    model_load_s: float  # a replica on a booted node loads the model
    node_idle_timeout_s: float  # Ray's autoscaler destroys a droplet idle this long
    autoscaler_interval_s: float  # Ray's autoscaler reacts this often
    worker_poll_s: float  # an idle worker asks for jobs this often
    billing: Billing

    @property
    def cold_start_s(self) -> float:
        return self.boot_s + self.model_load_s


# --- traces ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trace:
    name: str
    description: str
    arrivals: tuple[float, ...]


def poisson(rng: random.Random, rate_per_h: float, start: float, end: float) -> list[float]:
    out, t = [], start
    while True:
        t += rng.expovariate(rate_per_h / HOUR)
        if t >= end:
            return out
        out.append(t)


def steady(seed: int, hours: float, rate_per_h: float = 30.0) -> Trace:
    rng = random.Random(seed)
    return Trace("steady", f"Poisson, {rate_per_h:g} jobs/h", tuple(poisson(rng, rate_per_h, 0.0, hours * HOUR)))


def bursty(seed: int, hours: float, base_per_h: float = 4.0, bursts_per_day: float = 12.0,
           burst_jobs: tuple[int, int] = (20, 100), burst_span_s: float = 120.0) -> Trace:
    """A trickle plus bursts (a class or a campaign onboarding at once) at random times."""
    rng = random.Random(seed + 1)
    end = hours * HOUR
    arrivals = poisson(rng, base_per_h, 0.0, end)
    for start in poisson(rng, bursts_per_day / 24.0, 0.0, end):
        n = rng.randint(*burst_jobs)
        arrivals += [start + rng.uniform(0.0, burst_span_s) for _ in range(n)]
    return Trace("bursty", f"Poisson {base_per_h:g}/h + {bursts_per_day:g} bursts/day of"
                 f" {burst_jobs[0]}-{burst_jobs[1]} jobs in {burst_span_s:.0f}s",
                 tuple(sorted(a for a in arrivals if a < end)))


def daily(seed: int, hours: float, peak_per_h: float = 240.0, floor_per_h: float = 1.0) -> Trace:
    """A day/night cycle: the rate follows a cosine from `floor` at 03:00 to `peak` at 15:00."""
    rng = random.Random(seed + 2)

    def rate(t: float) -> float:
        phase = 2 * math.pi * ((t / HOUR - 3.0) % 24.0) / 24.0
        return floor_per_h + (peak_per_h - floor_per_h) * 0.5 * (1 - math.cos(phase))

    # Thinning: draw at the peak rate, keep each with probability rate(t) / peak.
    arrivals = [t for t in poisson(rng, peak_per_h, 0.0, hours * HOUR) if rng.random() < rate(t) / peak_per_h]
    return Trace("daily", f"day/night cosine, {floor_per_h:g}/h at 03:00 to {peak_per_h:g}/h at 15:00",
                 tuple(arrivals))


def surge(seed: int, hours: float, base_per_h: float = 30.0, surge_per_h: float = 6000.0,
          surge_h: float = 1.0) -> Trace:
    """A steady trickle and one hour (from 12:00) above one GPU's batched capacity."""
    rng = random.Random(seed + 3)
    start = min(12 * HOUR, max(0.0, hours * HOUR - surge_h * HOUR))
    arrivals = poisson(rng, base_per_h, 0.0, hours * HOUR) + poisson(rng, surge_per_h, start, start + surge_h * HOUR)
    return Trace("surge", f"Poisson {base_per_h:g}/h + {surge_h:g} h at {surge_per_h:g}/h", tuple(sorted(arrivals)))


def burst(seed: int, hours: float, jobs: int = 2000, span_s: float = 600.0, quiet_h: float = 6.0) -> Trace:
    """A launch spike: nothing for hours, then `jobs` jobs in `span_s`, then nothing."""
    rng = random.Random(seed + 4)
    start = min(quiet_h * HOUR, max(0.0, hours * HOUR - span_s))
    arrivals = sorted(start + rng.uniform(0.0, span_s) for _ in range(jobs))
    return Trace("burst", f"{jobs} jobs in {span_s / 60:g} min after {start / HOUR:g} h of nothing", tuple(arrivals))


TRACES: dict[str, Callable[[int, float], Trace]] = {"steady": steady, "bursty": bursty, "daily": daily,
                                                    "burst": burst, "surge": surge}


# --- the event loop -------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    def at(self, t: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._events, (max(t, self.now), next(self._seq), action))

    def run(self, until: Callable[[], bool]) -> None:
        while self._events and not until():
            self.now, _, action = heapq.heappop(self._events)
            action()


@dataclass
class Droplet:
    created_at: float
    ready_at: float
    gpu: GpuType
    destroyed_at: float | None = None
    replica: Replica | None = None
    idle_since: float | None = None

    @property
    def alive(self) -> bool:
        return self.destroyed_at is None


@dataclass
class Replica:
    gpu: GpuType
    droplet: Droplet | None = None
    state: str = "unplaced"  # unplaced -> loading -> running -> stopping -> gone
    busy: bool = False


@dataclass
class Result:
    policy: str
    latencies: list[float]
    droplets: list[Droplet]
    end: float
    billing: Billing

    @property
    def jobs(self) -> int:
        return len(self.latencies)

    def _lifetime(self, d: Droplet) -> float:
        return (d.destroyed_at if d.destroyed_at is not None else self.end) - d.created_at

    @property
    def gpu_seconds(self) -> float:
        return sum(self._lifetime(d) for d in self.droplets)

    @property
    def starts(self) -> int:
        return len(self.droplets)

    @property
    def cost(self) -> float:
        return sum(self.billing.cost(self._lifetime(d), d.gpu.hourly_usd) for d in self.droplets)

    def starts_by_size(self) -> str:
        counts: dict[str, int] = {}
        for d in self.droplets:
            counts[d.gpu.name] = counts.get(d.gpu.name, 0) + 1
        return " ".join(f"{name.removeprefix('gpu_')}:{n}" for name, n in sorted(counts.items())) or "-"


    def percentile(self, q: float) -> float:
        xs = sorted(self.latencies)
        if not xs:
            return float("nan")
        k = (len(xs) - 1) * q
        lo, hi = math.floor(k), math.ceil(k)
        return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


class Queue:
    """Pending jobs in submission order, and who finished when."""

    def __init__(self, clock: Clock, arrivals: Iterable[float]) -> None:
        self.clock = clock
        self.pending: deque[float] = deque()
        self.processing = 0
        self.latencies: list[float] = []
        self.total = 0
        self.on_submit: Callable[[], None] = lambda: None
        for t in arrivals:
            self.total += 1
            clock.at(t, lambda t=t: self._submit(t))

    def _submit(self, t: float) -> None:
        self.pending.append(t)
        self.on_submit()

    def take(self, limit: int) -> list[float]:
        batch = [self.pending.popleft() for _ in range(min(limit, len(self.pending)))]
        self.processing += len(batch)
        return batch

    def finish(self, batch: list[float]) -> None:
        self.processing -= len(batch)
        self.latencies += [self.clock.now - t for t in batch]

    @property
    def drained(self) -> bool:
        return len(self.latencies) == self.total

    def snapshot(self) -> QueueSnapshot:
        now = self.clock.now
        oldest = (now - self.pending[0]) if self.pending else None
        return QueueSnapshot(pending=len(self.pending), processing=self.processing,
                             oldest_pending_age_s=oldest, taken_at=now)


# --- policies -------------------------------------------------------------------------------


def simulate_always_on(trace: Trace, service: ServiceModel, fleet: FleetModel, horizon: float,
                       gpu: GpuType) -> Result:
    """One GPU up for the whole trace (booted before it starts), batching like our workers."""
    service = service.on(gpu)
    clock = Clock()
    queue = Queue(clock, trace.arrivals)

    def work() -> None:
        batch = queue.take(service.max_batch_size)
        if not batch:
            clock.at(clock.now + fleet.worker_poll_s, work)
            return

        def done() -> None:
            queue.finish(batch)
            work()

        clock.at(clock.now + service.batch_s(len(batch)), done)

    clock.at(0.0, work)
    clock.run(until=lambda: queue.drained and clock.now >= horizon)
    end = max(horizon, clock.now)
    return Result("always-on", queue.latencies, [Droplet(0.0, 0.0, gpu, destroyed_at=end)], end, fleet.billing)


def simulate_seed(trace: Trace, service: ServiceModel, fleet: FleetModel, gpu: GpuType, *, idle_s: float = 300.0,
                  poll_s: float = 5.0, fetch_limit: int = 10) -> Result:
    """The seed's DropletManager and worker loop, with a stop that destroys the droplet."""
    service = service.on(gpu)
    clock = Clock()
    queue = Queue(clock, trace.arrivals)
    droplets: list[Droplet] = []
    state = {"last_work": 0.0}

    def current() -> Droplet | None:
        return droplets[-1] if droplets and droplets[-1].alive else None

    def ensure_running() -> None:  # "Queue job and ensure GPU worker running"
        if current() is None:
            d = Droplet(created_at=clock.now, ready_at=clock.now + fleet.cold_start_s, gpu=gpu)
            droplets.append(d)
            clock.at(d.ready_at, lambda: started(d))

    def started(d: Droplet) -> None:
        state["last_work"] = clock.now
        loop(d)

    def loop(d: Droplet) -> None:
        jobs = queue.take(fetch_limit)  # getPendingJobs(limit=10)
        if not jobs:
            if clock.now - state["last_work"] >= idle_s:  # "if idle_time > 5_minutes: shutdown"
                d.destroyed_at = clock.now
                if queue.pending:  # a job that came in meanwhile starts a new droplet
                    ensure_running()
                return
            clock.at(clock.now + poll_s, lambda: loop(d))
            return
        run_one(d, jobs, 0)

    def run_one(d: Droplet, jobs: list[float], i: int) -> None:
        def done() -> None:
            queue.finish([jobs[i]])
            state["last_work"] = clock.now
            if i + 1 < len(jobs):
                run_one(d, jobs, i + 1)
            else:
                clock.at(clock.now + poll_s, lambda: loop(d))  # "await asyncio.sleep(5)"

        clock.at(clock.now + service.batch_s(1), done)

    queue.on_submit = ensure_running
    clock.run(until=lambda: queue.drained and current() is None)
    return Result("seed", queue.latencies, droplets, clock.now, fleet.billing)


class OursSim:
    """Serve replicas per GPU size set by `voiceq.sizing.plan_fleet`; droplets by a model of Ray's
    autoscaler."""

    def __init__(self, trace: Trace, service: ServiceModel, fleet: FleetModel, config: ScalingConfig,
                 horizon: float, gpus: list[GpuType], *, wake_on_submit: bool = True) -> None:
        self.horizon = horizon
        self.clock = Clock()
        self.queue = Queue(self.clock, trace.arrivals)
        self.fleet, self.config, self.gpus = fleet, config, gpus
        self.services = {g.name: service.on(g) for g in gpus}
        self.state = ScalingState()
        self.replicas: list[Replica] = []
        self.droplets: list[Droplet] = []
        self.decisions = 0
        if wake_on_submit:
            # The ingress wakes the policy when a job arrives to an empty fleet (Serve scales
            # from zero on a request queued at a handle): a decision now, not at the next poll.
            self.queue.on_submit = self.wake

    def run(self) -> Result:
        self.clock.at(0.0, self.periodic_tick)
        self.clock.at(0.0, self.autoscaler_tick)
        self.clock.run(until=self.finished)
        return Result("ours", self.queue.latencies, self.droplets, self.clock.now, self.fleet.billing)

    def finished(self) -> bool:
        if not self.queue.drained:
            return False
        if self.config.warm_standby:  # a standby is billed for the whole trace
            return self.clock.now >= self.horizon
        return not self.replicas and not any(d.alive for d in self.droplets)

    def wake(self) -> None:
        if not self.replicas:
            self.policy_tick()

    def periodic_tick(self) -> None:
        self.policy_tick()
        self.clock.at(self.clock.now + self.config.poll_interval_s, self.periodic_tick)

    # Serve's controller: the policy decides, Serve adds or removes replicas of each size.
    def policy_tick(self) -> None:
        now = self.clock.now
        current = {g.name: sum(1 for r in self.replicas if r.gpu.name == g.name) for g in self.gpus}
        plan, self.state = plan_fleet(self.queue.snapshot(), current, self.state, self.config, self.gpus, now=now)
        self.decisions += 1
        for gpu in self.gpus:
            want, have = plan.desired.get(gpu.name, 0), current[gpu.name]
            if want > have:
                self.replicas += [Replica(gpu) for _ in range(want - have)]
            elif want < have:
                # Serve stops replicas that are not running first, then idle ones, then busy ones.
                mine = [r for r in self.replicas if r.gpu.name == gpu.name]
                order = sorted(mine, key=lambda r: ({"unplaced": 0, "loading": 1}.get(r.state, 2), r.busy))
                for r in order[: have - want]:
                    self.stop(r)

    def stop(self, r: Replica) -> None:
        self.replicas.remove(r)
        if r.busy:
            r.state = "stopping"  # finishes its batch first (graceful shutdown)
        else:
            self.release(r)

    def release(self, r: Replica) -> None:
        r.state = "gone"
        if r.droplet is not None:
            r.droplet.replica = None
            r.droplet.idle_since = self.clock.now

    # Ray's autoscaler: place replicas on free droplets of their size, create droplets for the
    # rest, destroy droplets idle longer than the timeout.
    def autoscaler_tick(self) -> None:
        now = self.clock.now
        for r in [r for r in self.replicas if r.state == "unplaced"]:
            free = next((d for d in self.droplets if d.alive and d.replica is None and d.gpu.name == r.gpu.name), None)
            if free is None:
                free = Droplet(created_at=now, ready_at=now + self.fleet.boot_s, gpu=r.gpu)
                self.droplets.append(free)
            free.replica, r.droplet, r.state = r, free, "loading"
            self.clock.at(max(now, free.ready_at) + self.fleet.model_load_s, lambda r=r: self.loaded(r))
        for d in self.droplets:
            if d.alive and d.replica is None and d.ready_at <= now:
                idle_since = max(d.idle_since or d.ready_at, d.ready_at)
                if now - idle_since >= self.fleet.node_idle_timeout_s:
                    d.destroyed_at = now
        if not self.finished():
            self.clock.at(now + self.fleet.autoscaler_interval_s, self.autoscaler_tick)

    def loaded(self, r: Replica) -> None:
        if r.state != "loading":
            return
        r.state = "running"
        self.work(r)

    # A replica's worker loop (voiceq.worker.Worker.run_forever).
    def work(self, r: Replica) -> None:
        if r.state == "stopping":
            self.release(r)
            return
        if r.state != "running":
            return
        service = self.services[r.gpu.name]
        batch = self.queue.take(service.max_batch_size)
        if not batch:
            self.clock.at(self.clock.now + self.fleet.worker_poll_s, lambda: self.work(r))
            return
        r.busy = True

        def done() -> None:
            r.busy = False
            self.queue.finish(batch)
            self.work(r)

        self.clock.at(self.clock.now + service.batch_s(len(batch)), done)


def simulate_ours(trace: Trace, service: ServiceModel, fleet: FleetModel, config: ScalingConfig,
                  horizon: float, gpus: list[GpuType], *, wake_on_submit: bool = True) -> Result:
    return OursSim(trace, service, fleet, config, horizon, gpus, wake_on_submit=wake_on_submit).run()


# --- the report -----------------------------------------------------------------------------


def cluster_idle_timeout_s(path: Path) -> float | None:
    """`idle_timeout_minutes` from the cluster config, when there is one to read."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
        return float(data["idle_timeout_minutes"]) * 60.0
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return None


def serve_config_batch_size(path: Path) -> int | None:
    """`max_batch_size` from the production Serve config's app args, when there is one."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
        for app in data["applications"]:
            if "max_batch_size" in (app.get("args") or {}):
                return int(app["args"]["max_batch_size"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return None
    return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = ScalingConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--hours", type=float, default=24.0, help="simulated length of each trace")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--traces", default="steady,bursty,daily,burst",
                   help=f"comma-separated, from {', '.join(TRACES)}")
    g = p.add_argument_group("service time")
    g.add_argument("--audio-s", type=float, default=8.0, help="seconds of audio per job")
    g.add_argument("--realtime-factor", type=float, default=2.75, help="batch-1 speed, x real time")
    g.add_argument("--batch-speedup-10", type=float, default=5.25, help="throughput gain of a batch of 10")
    g.add_argument("--io-s", type=float, default=0.5, help="per-job I/O and post-processing seconds")
    g.add_argument("--max-batch-size", type=int, default=None,
                   help="default: cluster_configs/production.yaml's, else Settings'")
    g = p.add_argument_group("fleet")
    g.add_argument("--cluster-config", type=Path, default=REPO / "cluster_configs" / "digitalocean.yaml",
                   help="GPU node types (price, jobs_per_s), billing and Ray's idle timeout")
    g.add_argument("--sizes", default="", help="comma-separated GPU node types ours may use (default: all)")
    g.add_argument("--seed-size", default="gpu_mi300x", help="the seed's (and always-on's) droplet")
    g.add_argument("--billing", default=None, help="per_second, hourly or INCREMENT_S/MINIMUM_S"
                   " (default: provider.billing in the cluster config, else per_second)")
    g.add_argument("--boot-s", type=float, default=210.0, help="droplet create -> worker joined")
    g.add_argument("--model-load-s", type=float, default=30.0)
    g.add_argument("--node-idle-timeout-s", type=float, default=None,
                   help="Ray's idle timeout (default: idle_timeout_minutes in the cluster config,"
                        f" else the {ASSUMED_NODE_IDLE_TIMEOUT_S:.0f} s the policy's idle_s is chosen for)")
    g.add_argument("--autoscaler-interval-s", type=float, default=1.0,
                   help="Ray's autoscaler loop (AUTOSCALER_UPDATE_INTERVAL_S on the head)")
    g.add_argument("--no-wake", action="store_true", help="no wake on submit: the policy sees jobs at its next poll")
    g = p.add_argument_group("our policy (voiceq.scaling.ScalingConfig)")
    for f in ("min_jobs_to_start", "max_wait_s", "jobs_per_replica", "max_replicas", "warm_standby",
              "idle_s", "scale_in_s", "poll_interval_s", "wait_target_s"):
        value = getattr(defaults, f)
        g.add_argument("--" + f.replace("_", "-"), type=type(value), default=value)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import yaml

    args = parse_args(argv)
    cluster = yaml.safe_load(args.cluster_config.read_text())
    gpus = gpu_types_from_cluster_config(cluster, default_cold_start_s=args.boot_s + args.model_load_s)
    by_name = {g.name: g for g in gpus}
    chosen = [n.strip() for n in args.sizes.split(",") if n.strip()] or list(by_name)
    unknown = [n for n in [*chosen, args.seed_size] if n not in by_name]
    if unknown:
        print(f"unknown GPU node type(s) {unknown}; the cluster config has {', '.join(by_name)}", file=sys.stderr)
        return 2
    ours_gpus = [by_name[n] for n in chosen]
    seed_gpu = by_name[args.seed_size]
    billing_source = "--billing"
    if args.billing:
        billing = Billing.named(args.billing)
    else:
        billing, billing_source = billing_from_cluster_config(cluster) or Billing(), str(args.cluster_config.name)
    idle_timeout = args.node_idle_timeout_s
    idle_source = "--node-idle-timeout-s"
    if idle_timeout is None:
        idle_timeout = cluster_idle_timeout_s(args.cluster_config)
        idle_source = str(args.cluster_config.name)
        if idle_timeout is None:
            idle_timeout, idle_source = ASSUMED_NODE_IDLE_TIMEOUT_S, "assumed: no cluster config to read"
    batch_source = "--max-batch-size"
    if args.max_batch_size is None:
        args.max_batch_size = serve_config_batch_size(REPO / "cluster_configs" / "production.yaml")
        batch_source = "cluster_configs/production.yaml"
        if args.max_batch_size is None:
            args.max_batch_size, batch_source = Settings().max_batch_size, "Settings default"
    service = ServiceModel.from_published(audio_s=args.audio_s, realtime_factor=args.realtime_factor,
                                          speedup_10=args.batch_speedup_10, io_s=args.io_s,
                                          max_batch_size=args.max_batch_size)
    fleet = FleetModel(boot_s=args.boot_s, model_load_s=args.model_load_s, node_idle_timeout_s=idle_timeout,
                       autoscaler_interval_s=args.autoscaler_interval_s, worker_poll_s=Settings().poll_interval_s,
                       billing=billing)
    config = replace(ScalingConfig(), billing_increment_s=billing.increment_s, billing_minimum_s=billing.minimum_s,
                     **{f: getattr(args, f) for f in (
                         "min_jobs_to_start", "max_wait_s", "jobs_per_replica", "max_replicas", "warm_standby",
                         "idle_s", "scale_in_s", "poll_interval_s", "wait_target_s")})

    print(f"service (3090 model): batch of n = {service.batch_fixed_s:.2f} + {service.per_job_s:.2f}*n s"
          f" (batch 1: {service.batch_s(1):.2f} s/job, batch {service.max_batch_size}:"
          f" {service.batch_s(service.max_batch_size) / service.max_batch_size:.2f} s/job;"
          f" max batch from {batch_source}); per size, scaled to its jobs_per_s:")
    for g in gpus:
        on = service.on(g)
        print(f"  {g.name:<12} {g.size:<20} ${g.hourly_usd:.2f}/h {g.jobs_per_s:g} jobs/s"
              f" (batch 1: {on.batch_s(1):.2f} s) ${g.usd_per_job_busy * 1000:.3f}/1k jobs busy"
              + ("" if g.name in chosen else "  (not used by ours)"))
    print(f"fleet: cold start {fleet.boot_s:.0f}+{fleet.model_load_s:.0f} s, Ray idle timeout"
          f" {fleet.node_idle_timeout_s:.0f} s ({idle_source}), autoscaler every {fleet.autoscaler_interval_s:g} s,"
          f" billing {billing.describe()} ({billing_source})")
    print("ours: " + " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in config.to_dict().items())
          + ("" if args.no_wake else " wake_on_submit=True"))
    print(f"seed: one {seed_gpu.name} droplet, destroyed after 5 idle minutes (as written it powers a fixed"
          " droplet off, which DigitalOcean bills like a running one: always-on's cost)")
    print()

    worst = 0.0
    names = [n.strip() for n in args.traces.split(",") if n.strip()]
    unknown = [n for n in names if n not in TRACES]
    if unknown or not names:
        print(f"unknown trace(s) {unknown}; choose from {', '.join(TRACES)}", file=sys.stderr)
        return 2
    for trace in (TRACES[n](args.seed, args.hours) for n in names):
        horizon = args.hours * HOUR
        results = [
            simulate_always_on(trace, service, fleet, horizon, seed_gpu),
            simulate_seed(trace, service, fleet, seed_gpu),
            simulate_ours(trace, service, fleet, config, horizon, ours_gpus, wake_on_submit=not args.no_wake),
        ]
        print(f"{trace.name}: {len(trace.arrivals)} jobs in {args.hours:g} h ({trace.description})")
        print(f"  {'policy':<10} {'$/1k jobs':>10} {'p50 s':>8} {'p95 s':>8} {'GPU-h':>7} {'starts':>7}  sizes")
        for r in results:
            print(f"  {r.policy:<10} {r.cost / r.jobs * 1000 if r.jobs else float('nan'):>10.2f}"
                  f" {r.percentile(0.5):>8.1f} {r.percentile(0.95):>8.1f}"
                  f" {r.gpu_seconds / HOUR:>7.2f} {r.starts:>7d}  {r.starts_by_size()}")
        seed, ours = results[1], results[2]
        ratio = ours.cost / seed.cost
        worse_p95 = ours.percentile(0.95) > seed.percentile(0.95)
        print(f"  ours/seed cost {ratio:.3f}, p95 {ours.percentile(0.95) - seed.percentile(0.95):+.1f} s"
              + ("  <- ours has the worse p95" if worse_p95 else ""))
        print()
        worst = max(worst, ratio)
    print(f"worst_ours_vs_seed_cost={worst:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
