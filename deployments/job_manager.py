"""Bookkeeping deployment: `JobManager` over the configured store and storage, plus the lease
reaper that returns jobs of lost workers to the queue."""

from __future__ import annotations

import asyncio
import os
import time
import logging

import ray
from ray import serve

from deployments.fleet import FleetWatch
from deployments.connections import open_blob_storage, open_job_store
from voiceq.manager import JobManager
from voiceq.metrics import Metrics
from voiceq.settings import Settings

from .replica_logs import configure_replica_logging

log = logging.getLogger("voiceq.deployments")


@serve.deployment(
    name="JobManager",
    num_replicas=1,
    max_ongoing_requests=256,
    ray_actor_options={"num_cpus": 0},
    health_check_period_s=5,
    # Workers poll `claim` every second: access lines for those would drown the job log lines.
    logging_config={"enable_access_log": False},
)
class JobManagerDeployment(JobManager):
    async def __init__(self, settings: Settings) -> None:
        configure_replica_logging()
        super().__init__(open_job_store(settings), open_blob_storage(settings), settings, metrics=Metrics())
        # Several reaps per lease period, so a lost worker's jobs wait at most about a lease;
        # at least every 5 s, so the queue gauges are fresh in every scrape of Ray's exporter.
        interval = max(0.5, min(5.0, settings.lease_s / 4))
        self._reaper = asyncio.get_running_loop().create_task(self.reap_forever(interval))
        # Webhooks owed are in the store's outbox: a new replica picks up what a dead one left.
        self._webhooks = asyncio.get_running_loop().create_task(self.deliver_webhooks_forever(1.0))
        self._fleet = FleetWatch(hourly_price=settings.gpu_hourly_price)
        self._fleet_task = asyncio.get_running_loop().create_task(self._watch_fleet(15.0))
        # Finishes erasures a restart cut short, and sweeps by VOICEQ_RETENTION_DAYS.
        self._housekeeping = asyncio.get_running_loop().create_task(self.housekeeping_forever())

    async def _watch_fleet(self, interval_s: float) -> None:
        while True:
            try:
                nodes = await asyncio.to_thread(ray.nodes)
                self.metrics.gpu_fleet(*self._fleet.observe(nodes, time.time()))
            except Exception:  # a gauge must never take bookkeeping down
                log.exception("could not read the cluster's nodes")
            await asyncio.sleep(interval_s)

    def describe(self) -> dict:
        return {"pid": os.getpid(), "store": self.settings.job_store_kind, "storage": self.settings.storage_kind}

    def check_health(self) -> None:
        if self._reaper.done():
            raise RuntimeError("lease reaper stopped")
        if self._webhooks.done():
            raise RuntimeError("webhook delivery stopped")
