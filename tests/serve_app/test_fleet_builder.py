"""The app builder with a fleet of GPU sizes: one inference deployment per size, each asking for
its size's resource and sharing one plan, and the wake bound where it applies."""

from __future__ import annotations

from typing import Any

from ray.serve import Application
from ray.serve.deployment import Deployment

from serve_app.builder import compose
from tests.droplets.cluster import REPO
from voiceq.settings import Settings

FLEET_CONFIG = str(REPO / "cluster_configs" / "digitalocean.yaml")


def graph(app: Application) -> tuple[dict[str, Deployment], Deployment]:
    """Every deployment (lists and dicts of bound deployments included), and the ingress."""
    found: dict[str, Deployment] = {}
    ingress = app._bound_deployment
    pending: list[Any] = [app]
    while pending:
        item = pending.pop()
        if isinstance(item, Application):
            deployment = item._bound_deployment
            found[deployment.name] = deployment
            pending += [*deployment.init_args, *deployment.init_kwargs.values()]
        elif isinstance(item, dict):
            pending += list(item.values())
    return found, ingress


def test_one_inference_deployment_per_gpu_size() -> None:
    deployments, ingress = graph(compose(Settings(environment="production", chatterbox_mode="remote",
                                                  fleet_config=FLEET_CONFIG)))
    inference = {n: d for n, d in deployments.items() if n.startswith("VoiceCloneInference")}
    assert set(inference) == {"VoiceCloneInference", "VoiceCloneInference-gpu_l40s",
                              "VoiceCloneInference-gpu_mi300x", "VoiceCloneInference-gpu_h100"}
    types = {}
    for name, deployment in inference.items():
        actor = deployment.ray_actor_options
        [(resource, amount)] = actor["resources"].items()
        assert actor["num_gpus"] == 1 and amount == 1
        kwargs = deployment._deployment_config.autoscaling_config.policy.policy_kwargs
        assert resource == f"voiceq_node_{kwargs['node_type']}"
        types[name] = kwargs["node_type"]
        assert kwargs["fleet"] == next(iter(inference.values()))._deployment_config.autoscaling_config.policy.policy_kwargs["fleet"]
    assert types["VoiceCloneInference"] == "gpu_rtx4000"  # the cheapest per hour keeps the name
    # The ingress wakes the size one job gets: the RTX 4000's deployment.
    wake = ingress.init_args[3]
    assert isinstance(wake, Application) and wake._bound_deployment.name == "VoiceCloneInference"


def test_no_fleet_config_one_deployment_and_a_wake_only_where_it_applies() -> None:
    deployments, ingress = graph(compose(Settings(environment="production", chatterbox_mode="remote")))
    assert [n for n in deployments if n.startswith("VoiceCloneInference")] == ["VoiceCloneInference"]
    assert isinstance(ingress.init_args[3], Application)
    _, development = graph(compose(Settings(chatterbox_mode="remote")))
    assert development.init_args[3] is None  # development runs jobs at once: nothing to wake
