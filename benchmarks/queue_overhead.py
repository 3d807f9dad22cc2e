"""Queue-side overhead: voiceq's status and submit routes against the floor Serve itself sets.

    python benchmarks/queue_overhead.py [--seconds 8] [--clients 16]

One Ray instance runs four things side by side, each measured the same way (requests per second
at `--clients` concurrent clients for `--seconds`, and p50 latency at one client):

- floor:  a one-deployment Serve route answering a small JSON; no status read can beat it.
- naive:  a two-deployment submit: the ingress parses the multipart form, a second deployment
          writes the upload to a file and a row to SQLite.
- status: voiceq's own status route (production mode, an API key, SQLite).
- submit: voiceq's own submit route, same app; inference held at zero replicas, so the jobs stay
          queued and only the queue side is measured.

Last line: `status_vs_floor=<r> submit_vs_naive=<r>` (ratios of requests per second). Only
answers below 400 count as served; refusals are printed by status and code.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

import httpx

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

API = "/api/public/voice/onboarding"
API_KEY = "bench-key-0123456789"


@dataclass
class Figures:
    name: str
    rps: float
    p50_one_ms: float
    errors: int
    error_kinds: dict[str, int]


async def measure(name: str, call: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]], *, base_url: str,
                  clients: int, seconds: float) -> Figures:
    """Requests per second at `clients` concurrent clients, and p50 latency at one client."""
    limits = httpx.Limits(max_connections=clients * 2, max_keepalive_connections=clients * 2)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as http:
        for _ in range(20):  # warm the connections and the replicas' code paths
            (await call(http)).raise_for_status()
        one: list[float] = []
        deadline = time.perf_counter() + seconds / 2
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            (await call(http)).raise_for_status()
            one.append(time.perf_counter() - started)

        done = 0
        errors: Counter[str] = Counter()
        deadline = time.perf_counter() + seconds

        async def client() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                r = await call(http)
                if r.status_code >= 400:
                    errors[f"{r.status_code} {error_code(r)}"] += 1
                else:  # a refusal is not a request served
                    done += 1

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return Figures(name, done / elapsed, statistics.median(one) * 1000, sum(errors.values()), dict(errors))


def error_code(r: httpx.Response) -> str:
    try:
        return str(r.json().get("code"))
    except ValueError:
        return "(not JSON)"


def naive_apps() -> tuple[Any, Any]:
    """The floor route and the naive two-deployment submit, as plain Serve applications."""
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    @serve.deployment
    class Floor:
        async def __call__(self, request: Request) -> JSONResponse:
            return JSONResponse({"jobId": request.path_params.get("job_id", "x"), "status": "pending"})

    @serve.deployment
    class Writer:
        def __init__(self, root: str) -> None:
            self.root = Path(root)
            self.root.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(self.root / "jobs.sqlite3"), check_same_thread=False)
            self.db.execute("CREATE TABLE IF NOT EXISTS jobs (job_id TEXT PRIMARY KEY, user_id TEXT, "
                            "voice_name TEXT, status TEXT, created_at REAL)")

        def write(self, user_id: str, voice_name: str, audio: bytes) -> str:
            job_id = str(uuid.uuid4())
            (self.root / f"{job_id}.bin").write_bytes(audio)
            with self.db:
                self.db.execute("INSERT INTO jobs VALUES (?, ?, ?, 'pending', ?)",
                                (job_id, user_id, voice_name, time.time()))
            return job_id

    @serve.deployment
    class NaiveIngress:
        def __init__(self, writer: Any) -> None:
            self.writer = writer

        async def __call__(self, request: Request) -> JSONResponse:
            form = await request.form()
            upload = form["audio_file"]
            audio = await upload.read()  # type: ignore[union-attr]
            job_id = await self.writer.write.remote(str(form["user_id"]), str(form["voice_name"]), audio)
            return JSONResponse({"success": True, "jobId": job_id, "status": "queued"}, status_code=202)

    root = tempfile.mkdtemp(prefix="voiceq-naive-")
    return Floor.bind(), NaiveIngress.bind(Writer.bind(root))


def start(args: argparse.Namespace) -> str:
    import ray
    from ray import serve

    from serve_app.builder import compose
    from tests.support.engines import tone_engine_factory
    from tests.support.server import free_port, wait_until
    from voiceq.settings import Settings

    # Hold inference at zero replicas: the queue policy starts a replica only for this many jobs.
    os.environ["VOICEQ_SCALE_MIN_JOBS_TO_START"] = "100000000"
    os.environ["VOICEQ_SCALE_MAX_WAIT_S"] = "100000000"
    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    floor, naive = naive_apps()
    serve.run(floor, name="floor", route_prefix="/floor")
    serve.run(naive, name="naive", route_prefix="/naive")
    settings = Settings(environment="production", data_dir=Path(tempfile.mkdtemp(prefix="voiceq-overhead-")),
                        auth="required", api_keys=f"bench:{API_KEY}", autoscale=True,
                        max_active_jobs=10_000_000, max_active_jobs_per_user=10_000_000,
                        max_active_jobs_per_key=10_000_000, inference_num_cpus=0.5)
    serve.run(compose(settings, engine_factory=tone_engine_factory), name="voiceq", route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{url}/health").status_code == 200, timeout_s=120, what="the app")
    return url


async def run(args: argparse.Namespace, url: str) -> list[Figures]:
    from tests.support.audio import voice_file

    audio = voice_file("wav", seconds=1.5)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    form = {"user_id": "bench-user", "voice_name": "Bench Voice", "sample_text": "Hello there."}

    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        r = await http.post(f"{API}/clone", data=form, files={"audio_file": ("v.wav", audio, "audio/wav")},
                            headers=headers)
        r.raise_for_status()
        job_id = r.json()["jobId"]

    def floor(http: httpx.AsyncClient) -> Awaitable[httpx.Response]:
        return http.get(f"/floor/jobs/{job_id}/status")

    def status(http: httpx.AsyncClient) -> Awaitable[httpx.Response]:
        return http.get(f"{API}/jobs/{job_id}/status", headers=headers)

    def naive(http: httpx.AsyncClient) -> Awaitable[httpx.Response]:
        return http.post("/naive", data=form, files={"audio_file": ("v.wav", audio, "audio/wav")})

    def submit(http: httpx.AsyncClient) -> Awaitable[httpx.Response]:
        return http.post(f"{API}/clone", data=form, files={"audio_file": ("v.wav", audio, "audio/wav")},
                         headers=headers)

    out = []
    for name, call in (("floor", floor), ("status", status), ("naive", naive), ("submit", submit)):
        out.append(await measure(name, call, base_url=url, clients=args.clients, seconds=args.seconds))
        print(f"{out[-1].name:7s} {out[-1].rps:8.1f} req/s at {args.clients} clients   "
              f"p50 at 1 client {out[-1].p50_one_ms:6.1f} ms   errors {out[-1].errors} {out[-1].error_kinds or ''}",
              flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="measuring time per route at full concurrency")
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    url = start(args)
    try:
        figures = {f.name: f for f in asyncio.run(run(args, url))}
    finally:
        import ray
        from ray import serve

        serve.shutdown()
        ray.shutdown()
    print(f"status_vs_floor={figures['status'].rps / figures['floor'].rps:.2f} "
          f"submit_vs_naive={figures['submit'].rps / figures['naive'].rps:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
