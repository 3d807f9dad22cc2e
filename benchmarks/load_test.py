"""Load test: many concurrent clients, every job accounted for.

    python benchmarks/load_test.py --api-url http://localhost:8000 [--jobs 1000] [--clients 50]
    python benchmarks/load_test.py --start-app            # starts its own app, see below

Each client submits its share of jobs (as its own user), then everyone polls until every job is
final. It prints submitted, completed, failed, lost (accepted but never final, or gone),
duplicated completions, 5xx responses, and latency percentiles for submit and status calls.

Duplicates are counted from the outside: every job carries a `callback_url` to a receiver in
this process, and a job completed twice would call it twice (webhooks fire once per recorded
outcome). That needs the server to sign webhooks (VOICEQ_WEBHOOK_SECRET) and allow a loopback
callback (VOICEQ_WEBHOOK_ALLOW_PRIVATE=1); `--start-app` sets both. Without them, pass
`--no-webhooks` and duplicates are reported as unknown.

`--start-app` runs the real Serve app (ingress, bookkeeping on a SQLite file, inference
deployments) on a local Ray cluster, in production mode, with a stand-in engine of fixed service
time injected through the app builder: a real model costs about a minute per job on a CPU.
Last line: `lost=<n> duplicated=<n> server_errors=<n>`.

`--chaos` (with `--start-app`) SIGKILLs an inference replica once a third of the jobs are in and
the bookkeeping replica at two thirds. Clients then do what a careful client does: every
submission carries an Idempotency-Key, and a 503 with Retry-After (or a dropped connection) is
retried after that delay with the same key. A 503 with Retry-After whose retry then succeeds is
not a server error; any other 5xx, or a request that never succeeds, is. Webhooks are counted per
`webhook-id` (delivery is at least once: a redelivery of the same id is not a duplicate; two
completion webhooks with different ids for one job are).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

API = "/api/public/voice/onboarding"
FINAL = ("completed", "failed", "cancelled")


RETRIES = 30


@dataclass
class Tally:
    submit_latencies: list[float] = field(default_factory=list)
    status_latencies: list[float] = field(default_factory=list)
    codes: Counter = field(default_factory=Counter)
    accepted: list[str] = field(default_factory=list)
    refused: int = 0
    final: dict[str, str] = field(default_factory=dict)
    retried_503: int = 0
    server_errors: int = 0


async def send(tally: Tally, request: Any) -> httpx.Response | None:
    """One logical request: retried after a 503 with Retry-After or a dropped connection (what a
    client does while a deployment restarts). Counts a server error for any other 5xx, or when
    the retries run out."""
    for _ in range(RETRIES):
        try:
            r = await request()
        except httpx.HTTPError as err:
            tally.codes[f"error:{type(err).__name__}"] += 1
            await asyncio.sleep(1.0)
            continue
        tally.codes[r.status_code] += 1
        if r.status_code == 503 and "retry-after" in r.headers:
            tally.retried_503 += 1
            await asyncio.sleep(min(5.0, float(r.headers["retry-after"])))
            continue
        if r.status_code >= 500:
            tally.server_errors += 1
        return r
    tally.server_errors += 1
    return None


def percentiles(values: list[float]) -> str:
    if not values:
        return "n/a"
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return f"p50={pick(0.50):.1f}ms p95={pick(0.95):.1f}ms p99={pick(0.99):.1f}ms max={ordered[-1] * 1000:.1f}ms"


async def client_loop(i: int, n: int, http: httpx.AsyncClient, audio: bytes, tally: Tally, headers: dict[str, str],
                      callback_url: str | None) -> None:
    for k in range(n):
        data = {"user_id": f"load-user-{i}", "voice_name": f"voice {i}-{k}", "sample_text": "Load test sentence."}
        if callback_url:
            data["callback_url"] = callback_url
        # The same key on every retry of this submission: a retry after a lost reply returns
        # the job that was created instead of creating another.
        keyed = {**headers, "Idempotency-Key": f"load-{i}-{k}"}
        started = time.perf_counter()
        r = await send(tally, lambda: http.post(f"{API}/clone", data=data,
                                                files={"audio_file": ("v.wav", audio, "audio/wav")}, headers=keyed))
        if r is None:
            continue
        tally.submit_latencies.append(time.perf_counter() - started)
        if r.status_code in (200, 202):
            tally.accepted.append(r.json()["jobId"])
        else:
            tally.refused += 1


async def poll_until_final(http: httpx.AsyncClient, tally: Tally, headers: dict[str, str], timeout_s: float,
                           concurrency: int) -> None:
    deadline = time.monotonic() + timeout_s
    open_ids = [j for j in tally.accepted if j not in tally.final]
    gate = asyncio.Semaphore(concurrency)

    async def check(job_id: str) -> None:
        async with gate:
            started = time.perf_counter()
            r = await send(tally, lambda: http.get(f"{API}/jobs/{job_id}/status", headers=headers))
            if r is None:
                return
            tally.status_latencies.append(time.perf_counter() - started)
            if r.status_code == 200 and r.json()["status"] in FINAL:
                tally.final[job_id] = r.json()["status"]
            elif r.status_code == 404:
                tally.final[job_id] = "lost"

    while open_ids and time.monotonic() < deadline:
        await asyncio.gather(*(check(j) for j in open_ids))
        open_ids = [j for j in open_ids if j not in tally.final]
        if open_ids:
            await asyncio.sleep(1.0)


class Receiver:
    """Counts webhook calls per job and outcome, and the distinct webhook ids of each."""

    def __init__(self) -> None:
        self.calls: dict[str, Counter] = defaultdict(Counter)
        self.ids: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        self.server: Any = None
        self.url = ""

    async def start(self) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                length, webhook_id = 0, ""
                for line in head.decode("latin-1").split("\r\n"):
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                    if line.lower().startswith("webhook-id:"):
                        webhook_id = line.split(":", 1)[1].strip()
                body = await reader.readexactly(length)
                event = json.loads(body)
                self.calls[event["data"]["jobId"]][event["data"]["status"]] += 1
                self.ids[event["data"]["jobId"]][event["data"]["status"]].add(webhook_id)
                writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                await writer.drain()
            except (asyncio.IncompleteReadError, ValueError, KeyError):
                writer.write(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
            finally:
                writer.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/voiceq-hooks"

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()


def kill_replica(deployment: str) -> int:
    """SIGKILL one replica of `deployment` (this process is the app's Ray driver)."""
    import os
    import signal

    from ray import serve

    pid = serve.get_deployment_handle(deployment, app_name="voiceq").describe.remote().result(timeout_s=30)["pid"]
    os.kill(pid, signal.SIGKILL)
    return pid


async def chaos(tally: Tally, jobs: int) -> list[str]:
    """Kill an inference replica at a third of the submissions, bookkeeping at two thirds."""
    done: list[str] = []
    for fraction, deployment in ((1 / 3, "VoiceCloneInference"), (2 / 3, "JobManager")):
        while len(tally.accepted) < jobs * fraction:
            await asyncio.sleep(0.05)
        pid = await asyncio.to_thread(kill_replica, deployment)
        done.append(f"SIGKILLed {deployment} pid {pid} after {len(tally.accepted)} accepted jobs")
        print(done[-1], flush=True)
    return done


def running_replicas(serve: Any, deployment: str = "VoiceCloneInference") -> int:
    """RUNNING replicas of `deployment` in the app, from Serve's controller."""
    app = serve.status().applications.get("voiceq")
    status = app.deployments.get(deployment) if app else None
    if status is None:
        return 0
    return sum(n for state, n in status.replica_states.items() if str(state).endswith("RUNNING"))


def start_app(args: argparse.Namespace) -> tuple[str, Any]:
    """The real app with a fixed-cost stand-in engine, on a local Ray cluster."""
    import ray
    from ray import serve

    from serve_app.builder import compose
    from tests.support.engines import tone_engine_factory
    from tests.support.server import free_port, wait_until
    from voiceq.settings import Settings

    data_dir = Path(tempfile.mkdtemp(prefix="voiceq-load-"))
    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    settings = Settings(
        environment="production", data_dir=data_dir, auth="off", webhook_secret="load-test-secret",
        webhook_allow_private=True, max_batch_size=args.batch, inference_replicas=args.replicas,
        poll_interval_s=0.2, lease_s=10.0 if args.chaos else 30.0, max_active_jobs=100_000,
        max_active_jobs_per_user=10_000,
        inference_num_cpus=0.5,
    )
    serve.run(compose(settings, engine_factory=tone_engine_factory), name="voiceq", route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{url}/ready").status_code == 200, timeout_s=120, what="the app")
    print(f"started the app at {url} (stand-in engine, data in {data_dir})", flush=True)
    # How many inference replicas really run, as Serve's controller counts them (a deployment
    # option that Serve ignores would otherwise go unnoticed: the load would run on fewer).
    try:
        wait_until(lambda: running_replicas(serve) >= args.replicas, timeout_s=120, what="the inference replicas")
    finally:
        print(f"inference replicas running (serve status): {running_replicas(serve)} of {args.replicas} asked",
              flush=True)
    return url, (ray, serve)


async def run(args: argparse.Namespace) -> int:
    from tests.support.audio import voice_file

    audio = voice_file("wav", seconds=1.5)
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    receiver = None if args.no_webhooks else Receiver()
    if receiver:
        await receiver.start()
    tally = Tally()
    limits = httpx.Limits(max_connections=args.clients * 2, max_keepalive_connections=args.clients * 2)
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=args.api_url, timeout=120, limits=limits) as http:
        share = [args.jobs // args.clients + (1 if i < args.jobs % args.clients else 0) for i in range(args.clients)]
        killer = asyncio.create_task(chaos(tally, args.jobs)) if args.chaos else None
        await asyncio.gather(*(client_loop(i, n, http, audio, tally, headers, receiver.url if receiver else None)
                               for i, n in enumerate(share)))
        if killer is not None:
            await killer
        submitted_s = time.perf_counter() - started
        await poll_until_final(http, tally, headers, args.timeout, concurrency=args.clients)
    total_s = time.perf_counter() - started
    if receiver:
        # The last webhooks are in flight (after a bookkeeping restart, from the outbox).
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and any(
                s in FINAL and not receiver.ids[j][s] for j, s in tally.final.items()):
            await asyncio.sleep(1.0)
        await asyncio.sleep(2.0)
        await receiver.stop()

    outcomes = Counter(tally.final.values())
    lost = sum(1 for j in tally.accepted if tally.final.get(j, "lost") == "lost")
    server_errors = tally.server_errors
    redelivered = 0
    if receiver:
        # A job completed twice shows as two completion webhooks with different ids.
        duplicated = sum(1 for ids in receiver.ids.values() if len(ids["completed"]) > 1)
        duplicated += sum(1 for j, s in tally.final.items() if s != "completed" and receiver.ids[j]["completed"])
        dup_text = str(duplicated)
        missing_hooks = sum(1 for j, s in tally.final.items() if s in FINAL and not receiver.ids[j][s])
        redelivered = sum(sum(receiver.calls[j].values()) - sum(len(v) for v in receiver.ids[j].values())
                          for j in receiver.calls)
    else:
        dup_text, missing_hooks = "unknown", 0

    print(f"jobs: {args.jobs} from {args.clients} concurrent clients in {total_s:.1f} s "
          f"(all submitted in {submitted_s:.1f} s)")
    print(f"submitted={len(tally.accepted)} refused={tally.refused} completed={outcomes['completed']} "
          f"failed={outcomes['failed']} cancelled={outcomes['cancelled']}")
    print(f"throughput: {outcomes['completed'] / total_s:.1f} completed jobs/s")
    print(f"submit latency: {percentiles(tally.submit_latencies)}")
    print(f"status latency: {percentiles(tally.status_latencies)} over {len(tally.status_latencies)} polls")
    print(f"responses: {dict(sorted(((str(k), v) for k, v in tally.codes.items())))} "
          f"(503 with Retry-After, retried: {tally.retried_503})")
    if receiver:
        print(f"webhooks: {sum(sum(c.values()) for c in receiver.calls.values())} received, "
              f"{redelivered} redeliveries of an id already received, {missing_hooks} final jobs without one")
    print(f"lost={lost} duplicated={dup_text} server_errors={server_errors}")
    return 0 if lost == 0 and server_errors == 0 and dup_text in ("0", "unknown") else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api-url", default="http://localhost:8000")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for every job to finish")
    parser.add_argument("--no-webhooks", action="store_true", help="server without webhooks: duplicates unknown")
    parser.add_argument("--start-app", action="store_true", help="start the app with a fixed-cost stand-in engine")
    parser.add_argument("--replicas", type=int, default=2, help="inference replicas (--start-app)")
    parser.add_argument("--batch", type=int, default=16, help="max batch size (--start-app)")
    parser.add_argument("--chaos", action="store_true",
                        help="SIGKILL an inference replica and the bookkeeping replica mid-run (--start-app)")
    args = parser.parse_args()
    if args.chaos and not args.start_app:
        parser.error("--chaos kills replicas of the app it started: use it with --start-app")
    shutdown = None
    if args.start_app:
        args.api_url, shutdown = start_app(args)
    try:
        return asyncio.run(run(args))
    finally:
        if shutdown:
            ray, serve = shutdown
            serve.shutdown()
            ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
