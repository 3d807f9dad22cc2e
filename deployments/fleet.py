"""GPU nodes in the Ray cluster and what they have cost so far, for the dashboard's gauges.

The bookkeeping deployment looks at `ray.nodes()` every few seconds; a node's age is counted
from when this watcher first saw it alive (Ray's node table has no start time), so after a
bookkeeping restart the figure restarts too. The droplets' own creation times, and the exact
bill, are in `droplets.lifecycle` (`voiceq droplets`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping


def gpu_node_ids(nodes: Iterable[Mapping[str, Any]]) -> set[str]:
    return {n["NodeID"] for n in nodes if n.get("Alive") and float(n.get("Resources", {}).get("GPU", 0)) > 0}


@dataclass
class FleetWatch:
    hourly_price: float
    first_seen: dict[str, float] = field(default_factory=dict)

    def observe(self, nodes: Iterable[Mapping[str, Any]], now: float) -> tuple[int, float]:
        """(GPU nodes alive now, dollars they have cost since first seen)."""
        alive = gpu_node_ids(nodes)
        for node_id in alive:
            self.first_seen.setdefault(node_id, now)
        for node_id in list(self.first_seen):
            if node_id not in alive:
                del self.first_seen[node_id]
        hours = sum(now - since for since in self.first_seen.values()) / 3600.0
        return len(alive), round(hours * self.hourly_price, 6)
