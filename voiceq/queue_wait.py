"""A pending job's place in the queue and a rough wait, for the status route.

The estimate is (position + 1) x the recent GPU time of one job of the model: the jobs a claim
takes first, then this one, each costing what recent jobs cost. Recent is an exponentially
weighted mean of the GPU shares (each job's share of its engine pass, so a batch counts its pass
once) of the completions this bookkeeping replica recorded: free to keep, nothing read from the
store. It leaves out jobs already processing and assumes one engine; until a job of the model
completed here there is no estimate (None), never a made-up figure.
"""

from __future__ import annotations

from dataclasses import dataclass

# Weight of the newest completion: about the last ten jobs count.
RECENT_WEIGHT = 0.2


@dataclass(frozen=True)
class QueuePlace:
    position: int  # claimable jobs of the model a claim takes first (JobStore.queue_position); 0: next
    estimated_wait_s: float | None


class WaitEstimator:
    def __init__(self, weight: float = RECENT_WEIGHT) -> None:
        self.weight = weight
        self._per_job_s: dict[str, float] = {}

    def record(self, model: str, gpu_seconds: float) -> None:
        if gpu_seconds <= 0:  # no share recorded: nothing learned
            return
        last = self._per_job_s.get(model)
        self._per_job_s[model] = gpu_seconds if last is None else last + self.weight * (gpu_seconds - last)

    def rates(self) -> dict[str, float]:
        """What was learned, per model: handed to estimators that record no completions."""
        return dict(self._per_job_s)

    def adopt(self, rates: dict[str, float]) -> None:
        """Take another estimator's figures (the ingress reads statuses itself, while the
        completions are recorded in bookkeeping)."""
        self._per_job_s = {model: s for model, s in rates.items() if s > 0}

    def place(self, model: str, position: int) -> QueuePlace:
        per_job = self._per_job_s.get(model)
        wait = None if per_job is None else round((position + 1) * per_job, 1)
        return QueuePlace(position=position, estimated_wait_s=wait)
