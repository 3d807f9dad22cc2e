from __future__ import annotations

from deployments.fleet import FleetWatch


def node(node_id: str, gpus: float, alive: bool = True) -> dict:
    return {"NodeID": node_id, "Alive": alive, "Resources": {"CPU": 8.0, **({"GPU": gpus} if gpus else {})}}


def test_gpu_nodes_are_counted_and_their_cost_accrues_while_alive() -> None:
    watch = FleetWatch(hourly_price=2.0)
    assert watch.observe([node("head", 0)], now=0) == (0, 0.0)
    assert watch.observe([node("head", 0), node("gpu1", 1)], now=100) == (1, 0.0)
    count, cost = watch.observe([node("head", 0), node("gpu1", 1), node("gpu2", 1)], now=3700)
    assert count == 2 and cost == 2.0  # gpu1 one hour, gpu2 just seen
    assert watch.observe([node("head", 0), node("gpu1", 1, alive=False), node("gpu2", 1)], now=5500) == (1, 1.0)
