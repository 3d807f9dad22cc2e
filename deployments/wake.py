"""Waking the queue policy when a job arrives to an empty fleet, through Serve's own path.

The queue policy reads the job store every `poll_interval_s`; a job submitted to an empty fleet
would wait for that reading before a GPU is even asked for. Serve already has a faster path:
a request queued at a handle of a deployment with no replicas is pushed to the controller at
once, and Serve starts a replica for it without waiting for the policy's delays. The ingress
sends such a request (`wake`, which does nothing on a replica) to the inference deployment of
the size the policy would start for one job, only when the whole fleet is empty, and only when
the policy would start a GPU for one job anyway (`min_jobs_to_start` 1). The policy sees the
queued request too: it reads the store at once, and holds the new replica until that reading
shows the job (deployments.autoscaling).

Ray's `request_resources` would have started a droplet, not a replica, and stays in force until
cleared: it would keep a GPU up that the queue policy cannot let go.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

log = logging.getLogger("voiceq.deployments")

WAKE_TIMEOUT_S = 30.0
EMPTY_CHECK_S = 2.0


def fleet_replicas(app_name: str, deployments: Sequence[str]) -> int:
    """Replicas of these deployments in any state but gone, as Serve's controller sees them."""
    app = serve.status().applications.get(app_name)
    if app is None:
        return 0
    total = 0
    for name in deployments:
        deployment = app.deployments.get(name)
        if deployment is not None:
            total += sum(deployment.replica_states.values())
    return total


class Waker:
    def __init__(self, target: DeploymentHandle, deployments: Sequence[str], *,
                 count_replicas: Callable[[], int] | None = None, clock: Callable[[], float] = time.monotonic,
                 timeout_s: float = WAKE_TIMEOUT_S) -> None:
        self.target = target
        self.deployments = list(deployments)
        self._count = count_replicas or self._serve_count
        self._clock = clock
        self._timeout_s = timeout_s
        self._task: asyncio.Task[None] | None = None
        self._busy_seen_at: float | None = None
        self.wakes_sent = 0

    def _serve_count(self) -> int:
        return fleet_replicas(serve.get_replica_context().app_name, self.deployments)

    def poke(self) -> None:
        """After a submission: wake the fleet if it is empty (one wake in flight at most)."""
        if self._task is not None and not self._task.done():
            return
        now = self._clock()
        if self._busy_seen_at is not None and now - self._busy_seen_at < EMPTY_CHECK_S:
            return  # the fleet had replicas a moment ago: the policy is reading the queue
        self._task = asyncio.get_running_loop().create_task(self._wake())

    async def _wake(self) -> None:
        try:
            replicas = await asyncio.to_thread(self._count)
        except Exception as err:  # noqa: BLE001 - no wake is the old behaviour, not an error
            log.warning("wake: could not read the fleet's replicas: %s", err)
            return
        if replicas > 0:
            self._busy_seen_at = self._clock()
            return
        self._busy_seen_at = None
        response: Any = self.target.wake.remote()
        self.wakes_sent += 1
        try:
            await asyncio.wait_for(_result(response), timeout=self._timeout_s)
        except Exception:  # noqa: BLE001 - a wake that is not served in time is simply dropped
            response.cancel()


async def _result(response: Any) -> Any:
    return await response
