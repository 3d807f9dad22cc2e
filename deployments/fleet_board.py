"""The plan shared by the policies of one app's inference deployments (one per GPU size).

It lives in its own module because Serve pickles a policy's module by value: state kept there
would be a separate copy in every deployment's policy. This module is imported by reference,
once per controller process, so the policies of one app meet here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from voiceq.scaling import QueueSnapshot, ScalingConfig, ScalingState
from voiceq.sizing import FleetDecision, GpuType, plan_fleet

log = logging.getLogger("ray.serve.voiceq_autoscaling")

# The controller calls every policy about every 0.1 s; one plan serves them all until an input
# changes or this long has passed (time-based rules: idle_s, scale_in_s, stale readings).
REPLAN_S = 0.5
MAX_BOARDS = 8


class FleetBoard:
    """The shared plan of one app's inference deployments (thread-safe)."""

    def __init__(self, config: ScalingConfig, gpus: Sequence[GpuType]) -> None:
        self.config = config
        self.gpus = tuple(gpus)
        self._lock = threading.Lock()
        self._current = {g.name: 0 for g in gpus}
        self._state = ScalingState()
        self._snapshot: QueueSnapshot | None = None
        self._snapshot_started_at: float | None = None
        self._plan: FleetDecision | None = None
        self._plan_key: tuple[Any, ...] | None = None
        self._plan_at: float | None = None
        self._wake_at: float | None = None
        self.plans: list[FleetDecision] = []  # the plans that changed something, oldest first

    def offer(self, snapshot: QueueSnapshot | None, started_at: float | None) -> None:
        """A deployment's latest reading of the queue; the freshest one wins."""
        if snapshot is None:
            return
        with self._lock:
            if self._snapshot is None or snapshot.taken_at > self._snapshot.taken_at:
                self._snapshot, self._snapshot_started_at = snapshot, started_at

    def wake(self, at: float) -> None:
        with self._lock:
            self._wake_at = at

    def awaiting_wake_reading(self, now: float) -> bool:
        with self._lock:
            if self._wake_at is None:
                return False
            started = self._snapshot_started_at
            if now - self._wake_at > self.config.stale_after_s or (started is not None and started >= self._wake_at):
                self._wake_at = None
                return False
            return True

    def desired(self, node_type: str, current: int, now: float) -> tuple[int, FleetDecision]:
        with self._lock:
            self._current[node_type] = current
            snapshot = self._snapshot
            key = (None if snapshot is None else snapshot.taken_at, tuple(sorted(self._current.items())))
            if self._plan is None or key != self._plan_key or self._plan_at is None or now - self._plan_at >= REPLAN_S:
                plan, self._state = plan_fleet(snapshot, self._current, self._state, self.config, self.gpus, now=now)
                self._record(plan)
                self._plan, self._plan_key, self._plan_at = plan, key, now
            assert self._plan is not None
            return int(self._plan.desired.get(node_type, 0)), self._plan

    def _record(self, plan: FleetDecision) -> None:
        last = self._plan
        if last is not None and (dict(last.desired), dict(last.current), last.decision.code) == (
                dict(plan.desired), dict(plan.current), plan.decision.code):
            return
        if dict(plan.desired) == dict(plan.current) and last is not None and dict(last.desired) == dict(plan.desired):
            level = logging.DEBUG  # a hold whose reason changed
        else:
            level = logging.INFO
        self.plans.append(plan)
        del self.plans[:-64]
        log.log(level, '%s detail="%s"', plan.log_line(), plan.decision.reason.replace('"', "'"))


_BOARDS: dict[str, FleetBoard] = {}
_BOARDS_LOCK = threading.Lock()


def board_for(key: str, config: ScalingConfig, gpus: Sequence[GpuType]) -> FleetBoard:
    """The board of the app `key` names (created by the first of its policies)."""
    with _BOARDS_LOCK:
        board = _BOARDS.get(key)
        if board is None or board.gpus != tuple(gpus) or board.config != config:
            board = _BOARDS[key] = FleetBoard(config, gpus)
            # Each redeploy of changed code or settings is a new key: keep only the latest few.
            for stale in list(_BOARDS)[:-MAX_BOARDS]:
                del _BOARDS[stale]
        return board


