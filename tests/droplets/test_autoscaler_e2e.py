"""Ray's real autoscaler drives our provider; only the DigitalOcean API is a stand-in.

A head node starts with ``--autoscaling-config`` pointing at a cluster config whose provider
is ours and whose API endpoint is the fake (`tests.droplets.cluster`). When the provider
creates a droplet, the fake "boots" it by running the launcher from the droplet's own
cloud-init user data (``ray start --address=... --block`` with the environment file the user
data writes: RAY_CLOUD_INSTANCE_ID = VOICEQ_DROPLET_ID = droplet id); destroying the droplet
stops that Ray worker.

- A plain Ray task asks for the GPU worker type's resources: one droplet is created, the task
  runs on it, and after the idle timeout the droplet is destroyed.
- The voiceq app in production, remote mode, with a fleet of two GPU sizes (an MI300X and an
  RTX 4000 node type, VOICEQ_FLEET_CONFIG = the cluster config): jobs submitted over HTTP make
  the queue policy choose the size (two jobs: the small one) and scale that size's inference
  deployment up from zero; its GPU replica makes the autoscaler create one droplet of that
  size; the replica runs there and completes the jobs; the empty queue scales the deployment
  back to zero and the idle droplet is destroyed. The large size is never started.

Every process started here runs in its own session and is stopped by process group; nothing
else on the machine is touched. Ports are picked free (several Ray clusters may share it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.droplets.cluster import (REPO, SMALL_SIZE, SMALL_TYPE, WORKER_SIZE, LocalCluster, RayDriver,
                                    free_ports, local_cluster)
from tests.support.audio import decode_mp3, voice_file
from voiceq.store.sqlite import SQLiteJobStore

pytestmark = pytest.mark.slow


DRIVER = textwrap.dedent(
    """
    import json, os, sys, ray
    ray.init(address=sys.argv[1], log_to_driver=False)

    # The MI300X type's own resource: of the cluster's two GPU sizes, this task wants that one.
    @ray.remote(num_gpus=1, num_cpus=1, resources={"voiceq_node_gpu_mi300x": 1})
    def where():
        return {"droplet": os.environ.get("VOICEQ_DROPLET_ID"),
                "instance": os.environ.get("RAY_CLOUD_INSTANCE_ID"),
                "miopen": os.environ.get("MIOPEN_LOG_LEVEL"),
                "mode": os.environ.get("CHATTERBOX_MODE"),
                "node": ray.get_runtime_context().get_node_id()}

    print("RESULT " + json.dumps(ray.get(where.remote(), timeout=240)), flush=True)
    """
)


@pytest.fixture
def temp_dir() -> Iterator[Path]:
    # Short: Ray's unix socket paths live under it.
    path = Path(tempfile.mkdtemp(prefix="rq-e2e-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_the_autoscaler_adds_and_removes_a_gpu_droplet(temp_dir: Path) -> None:
    with local_cluster(temp_dir) as cluster:
        fake = cluster.fake
        driver = subprocess.run(
            [sys.executable, "-c", DRIVER, cluster.address], env=cluster.head_env, cwd=REPO,
            capture_output=True, text=True, timeout=300,
        )
        assert driver.returncode == 0, driver.stdout[-3000:] + driver.stderr[-3000:]
        result = json.loads(driver.stdout.split("RESULT ", 1)[1])

        creates = fake.requests_to("POST /v2/droplets")
        assert len(creates) == 1, "the autoscaler should have asked for exactly one droplet"
        [worker_id] = creates[0].droplet_ids
        assert creates[0].body["size"] == WORKER_SIZE
        assert cluster.booted == [worker_id] and not cluster.boot_errors
        # The task ran on the droplet's Ray node, which carried the droplet's identity.
        assert result["droplet"] == result["instance"] == str(worker_id)
        assert result["miopen"] == "1" and result["mode"] == "remote"

        # Idle for 6 s: the autoscaler hands the droplet back.
        cluster.wait_for(lambda: worker_id in fake.destroyed_ids(), 120, "the idle GPU droplet to be destroyed")
        assert not cluster.processes.alive(f"droplet-{worker_id}")
        deletes = fake.requests_to("DELETE /v2/droplets/{id}")
        assert {r.droplet_ids for r in deletes} == {(worker_id,)}
        assert cluster.processes.alive("head")
        assert fake.droplet(cluster.head_id) is not None and fake.droplet(cluster.foreign_id) is not None
        assert not fake.touched_ids() & {cluster.foreign_id, cluster.head_id}
        # Nothing else was created, nothing is left running but the head.
        assert {d["id"] for d in fake.live_droplets(cluster.tag)} == {cluster.head_id}


# --- the voiceq app on the same cluster: the queue drives the GPU fleet -------------------

API = "/api/public/voice/onboarding"
# The queue policy (voiceq.scaling.ScalingConfig): start a GPU only once two jobs wait (the
# seed's "queue multiple jobs before starting a droplet"; max_wait_s keeps the age rule out
# of the way), one GPU at most, let it go 3 s after the queue empties, read the queue twice
# a second. `compose` reads these where the app is built (the driver, as `serve run` would);
# the head has them too, as a head that builds the app itself (`serve deploy`) would.
IDLE_S = 3.0
SCALING_ENV = {
    "VOICEQ_SCALE_MIN_JOBS_TO_START": "2",
    "VOICEQ_SCALE_MAX_WAIT_S": "600",
    "VOICEQ_SCALE_MAX_REPLICAS": "1",
    "VOICEQ_SCALE_IDLE_S": str(IDLE_S),
    "VOICEQ_SCALE_POLL_INTERVAL_S": "0.5",
}
RAY_IDLE_TIMEOUT_S = 6.0  # idle_timeout_minutes: 0.1


class Phases:
    """Elapsed time per phase, printed as it goes (pytest shows it with -s or on failure)."""

    def __init__(self) -> None:
        self.start = self.last = time.monotonic()

    def mark(self, what: str) -> float:
        now = time.monotonic()
        print(f"[e2e {now - self.start:6.1f} s] +{now - self.last:5.1f} s  {what}", flush=True)
        self.last = now
        return now


def submit(client: httpx.Client, seed: int) -> str:
    r = client.post(f"{API}/clone", data={"user_id": f"user{seed}", "voice_name": f"Voice {seed}",
                                          "sample_text": "Hello there."},
                    files={"audio_file": ("voice.wav", voice_file("wav", seconds=2.0, seed=seed),
                                          "application/octet-stream")})
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "queued"  # the API's word; the store's is "pending"
    return str(r.json()["jobId"])


def job_status(client: httpx.Client, job_id: str) -> dict[str, Any]:
    r = client.get(f"{API}/jobs/{job_id}/status")
    assert r.status_code == 200, r.text
    return dict(r.json())


def answers_ready(client: httpx.Client) -> bool:
    try:
        return client.get("/ready").status_code == 200
    except httpx.HTTPError:
        return False


def live_replicas(status: dict[str, Any]) -> list[dict[str, Any]]:
    """Inference replicas in any form but dead: actors pending a node, starting, running,
    stopping, and replicas Serve counts that have no actor yet."""
    counted = sum(((status["deployment"] or {}).get("replica_states") or {}).values())
    return list(status["replicas"]) + [{"state": "COUNTED_BY_SERVE"}] * max(0, counted - len(status["replicas"]))


def node_of(status: dict[str, Any], droplet_id: int) -> dict[str, Any] | None:
    """The Ray node the autoscaler matched to this droplet (by its cloud instance id)."""
    return next((n for n in status["nodes"] if n["instance_id"] == str(droplet_id) and n["node_id"]), None)


def controller_log(cluster: LocalCluster) -> str:
    return "".join(p.read_text(errors="replace")
                   for p in sorted((cluster.session_logs() / "serve").glob("controller_*.log")))


def test_jobs_scale_a_gpu_droplet_up_from_zero_and_back(temp_dir: Path, checkpoint_dir: Path) -> None:
    phases = Phases()
    [http_port] = free_ports(1)
    data_dir = temp_dir / "data"
    settings = {
        "environment": "production",  # submissions answer 202; replicas claim from the store
        "chatterbox_mode": "remote",  # inference replicas ask for a GPU; the queue policy scales them
        "data_dir": str(data_dir),  # the SQLite job store and blobs, shared by every local process
        "chatterbox_ckpt_dir": str(checkpoint_dir),
        "chatterbox_device": "auto",  # what a droplet runs; torch sees no GPU here, so the CPU
        "lease_s": 30.0,
        "poll_interval_s": 0.3,
        "auth": "off",
    }
    with local_cluster(temp_dir, head_env=SCALING_ENV) as cluster, \
            httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=60) as client:
        fake = cluster.fake
        driver = RayDriver(cluster, http_port=http_port, env=SCALING_ENV)
        phases.mark("head up, driver connected")
        # The fleet of sizes comes from the cluster config the head runs with.
        driver.call("deploy", settings={**settings, "fleet_config": str(cluster.config_path)}, timeout_s=240)
        cluster.wait_for(lambda: answers_ready(client), 120, "the app to answer /ready")
        phases.mark("app deployed")

        # 1. Nothing waits: no inference replica, no droplet. Then one job alone is below
        # min_jobs_to_start: after six readings of the queue there is still none.
        status = driver.call("status")
        assert status["deployment"] is not None, status
        assert live_replicas(status) == [] and not status["deployment"]["replica_states"], status
        assert cluster.worker_ids() == set() and fake.requests_to("POST /v2/droplets") == []
        first = submit(client, seed=1)
        time.sleep(6 * 0.5)
        status = driver.call("status")
        assert live_replicas(status) == [], f"one job (below min_jobs_to_start) started a replica: {status}"
        assert fake.requests_to("POST /v2/droplets") == [], "one job (below min_jobs_to_start) bought a GPU"
        assert job_status(client, first)["status"] == "pending"
        phases.mark("one job waits below the threshold: no replica, no droplet")

        # 2. The second job: the policy scales the deployment 0 -> 1, the replica cannot be
        # placed, Ray's autoscaler asks our provider for one GPU droplet, the fake boots it into
        # a Ray worker with the GPU node type's resources, the replica lands there, jobs run.
        second = submit(client, seed=2)
        cluster.wait_for(lambda: fake.requests_to("POST /v2/droplets"), 120, "the autoscaler to create a droplet")
        phases.mark("the autoscaler created a droplet")
        creates = fake.requests_to("POST /v2/droplets")
        assert len(creates) == 1, creates
        [worker_id] = creates[0].droplet_ids
        # Two jobs: the cheapest size per job that meets the wait target is the small GPU.
        assert creates[0].body["size"] == SMALL_SIZE
        assert cluster.tag in fake.droplet(worker_id)["tags"]  # type: ignore[index]
        cluster.wait_for(lambda: cluster.booted == [worker_id] or cluster.boot_errors, 60, "the droplet to boot")
        assert cluster.booted == [worker_id] and not cluster.boot_errors, cluster.boot_errors

        def replica_on_droplet() -> tuple[dict[str, Any], dict[str, Any]] | None:
            status = driver.call("status")
            node = node_of(status, worker_id)
            running = [r for r in status["replicas"] if r["state"] == "ALIVE"]
            if node is None or not running:
                return None
            return node, running[0]

        node, replica = cluster.wait_for(replica_on_droplet, 180,
                                         "an inference replica on the droplet's Ray node")
        phases.mark("droplet joined the cluster; an inference replica was placed on it")
        assert node["type"] == SMALL_TYPE and node["total"].get("GPU") == 1.0, node
        assert replica["node_id"] == node["node_id"], (replica, node)

        def both_finished() -> list[dict[str, Any]] | None:
            finals = [job_status(client, j) for j in (first, second)]
            return finals if all(f["status"] in ("completed", "failed", "cancelled") for f in finals) else None

        finals = cluster.wait_for(both_finished, 300, "both jobs to finish")
        phases.mark("both jobs completed")
        assert [f["status"] for f in finals] == ["completed", "completed"], finals
        for final in finals:
            # Ran on the droplet: the replica read the id cloud-init wrote for its Ray worker.
            assert final["workerInfo"] == {"environment": "production", "gpuType": "cpu",
                                           "dropletId": str(worker_id)}, final
            samples, rate = decode_mp3(client.get(final["resultUrl"]).content)
            assert rate == 24_000 and len(samples) > 0 and float(abs(samples).max()) > 0
        store = SQLiteJobStore(data_dir / "jobs.sqlite3")
        for job_id in (first, second):
            job = store.get(job_id)
            assert job is not None and job.worker_info is not None
            assert job.worker_info.node_id == node["node_id"], job.worker_info

        # 3. The queue is empty: after idle_s the policy scales to zero, the droplet's node
        # stands idle, and after Ray's idle timeout the autoscaler has our provider destroy it.
        cluster.wait_for(lambda: live_replicas(driver.call("status")) == [], 120,
                         "the inference deployment to scale back to zero")
        phases.mark("inference deployment back to zero replicas")
        cluster.wait_for(lambda: worker_id in fake.destroyed_ids(), 120, "the idle droplet to be destroyed")
        phases.mark("the idle droplet was destroyed")

        deletes = fake.requests_to("DELETE /v2/droplets/{id}")
        assert {r.droplet_ids for r in deletes} == {(worker_id,)}, deletes
        # Not while it worked: the node stood idle for at least Ray's timeout after the last job.
        destroyed_at = time.time() - (time.monotonic() - min(r.at for r in deletes))
        assert destroyed_at - max(f["completedAt"] for f in finals) >= RAY_IDLE_TIMEOUT_S
        assert not cluster.processes.alive(f"droplet-{worker_id}")
        # The policy logged its decisions with their reasons.
        log = controller_log(cluster)
        assert "scale event=up from=0 to=1 reason=min_jobs" in log, log[-3000:]
        up = next(line for line in log.splitlines() if "scale event=up from=0 to=1 reason=min_jobs" in line)
        assert f"size={SMALL_TYPE}" in up and "cheapest per job meeting" in up, up
        assert "scale event=down from=1 to=0 reason=idle_timeout" in log, log[-3000:]

        # No droplet comes back for the empty queue, none leaked, no foreign one touched.
        time.sleep(3)
        status = driver.call("status")
        assert live_replicas(status) == [] and status["pending_launches"] == 0, status
        assert len(fake.requests_to("POST /v2/droplets")) == 1
        assert not [r for r in fake.requests_to("POST /v2/droplets") if r.body["size"] == WORKER_SIZE]
        assert {d["id"] for d in fake.live_droplets(cluster.tag)} == {cluster.head_id}
        assert fake.droplet(cluster.foreign_id) is not None
        assert not fake.touched_ids() & {cluster.foreign_id, cluster.head_id}
        assert cluster.processes.alive("head")
        assert answers_ready(client)
        assert job_status(client, first)["status"] == "completed"
        phases.mark("no droplet leaked or relaunched; the app still answers")
