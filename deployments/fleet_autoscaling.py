"""Autoscaling for a fleet of GPU sizes: one inference deployment per GPU node type, one plan.

With `VOICEQ_FLEET_CONFIG` the app has an inference deployment per GPU node type of the
cluster (each replica asks for its type's `voiceq_node_<type>` resource, so Ray's autoscaler
creates a droplet of exactly that size). Serve calls each deployment's policy on its own, but
the size choice is one decision over the whole fleet (`voiceq.sizing.plan_fleet`): the
policies of one app share a `FleetBoard` in the controller process (deployments.fleet_board),
where each reports its deployment's target and takes its count from the shared plan.

Log lines (controller log, logger `ray.serve.voiceq_autoscaling`), one per change of the plan:

    scale event=up from=0 to=1 reason=min_jobs pending=1 processing=0 oldest_s=0.2 fleet=gpu_l40s:0,gpu_rtx4000:1 size=gpu_rtx4000 detail="...; gpu_rtx4000 x1: cheapest per job meeting the 300s wait target (...)"
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Callable

from ray.serve.config import AutoscalingConfig, AutoscalingContext

from deployments.autoscaling import JobQueueAutoscalingPolicy, policy_config, settings_to_kwargs
from deployments.fleet_board import board_for
from voiceq.scaling import ScalingConfig
from voiceq.settings import Settings
from voiceq.sizing import GpuType
from voiceq.store import JobStore

class FleetAutoscalingPolicy(JobQueueAutoscalingPolicy):
    """Serve class policy of one GPU size's inference deployment in a fleet."""

    def __init__(
        self,
        settings: Mapping[str, Any] | None = None,
        scaling: Mapping[str, Any] | None = None,
        *,
        gpus: Sequence[Mapping[str, Any]] = (),
        node_type: str = "",
        fleet: str = "voiceq",
        store: JobStore | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(settings, scaling, store=store, clock=clock)
        self.gpus = [GpuType(**g) for g in gpus]
        if node_type not in {g.name for g in self.gpus}:
            raise ValueError(f"node type {node_type!r} is not one of the fleet's {[g.name for g in self.gpus]}")
        self.node_type = node_type
        self.board = board_for(fleet, self.config, self.gpus)

    def __call__(self, ctx: AutoscalingContext) -> tuple[int, dict[str, Any]]:
        self._notice_wake(ctx)
        if self._wake_at is not None:
            self.board.wake(self._wake_at)
        self._maybe_poll()
        self.board.offer(self._snapshot, self._snapshot_started_at)
        current = int(ctx.target_num_replicas)
        now = self._clock()
        if self.board.awaiting_wake_reading(now):
            return current, {"voiceq_waking": True}
        desired, plan = self.board.desired(self.node_type, current, now)
        return desired, {"voiceq_last_decision": plan.to_dict()}


def fleet_autoscaling_config(settings: Settings, scaling: ScalingConfig, gpus: Sequence[GpuType], node_type: str,
                             *, fleet: str) -> AutoscalingConfig:
    """One GPU size's `autoscaling_config` (see `deployments.autoscaling.autoscaling_config` for
    why Serve's own delays are zero). The warm standby lives on the cheapest GPU per hour, so
    `min_replicas` stays 0 here and the plan keeps it."""
    return policy_config(FleetAutoscalingPolicy, min_replicas=0, max_replicas=scaling.max_replicas,
                         kwargs={"settings": settings_to_kwargs(settings), "scaling": scaling.to_dict(),
                                 "gpus": [g.to_dict() for g in gpus], "node_type": node_type, "fleet": fleet})
