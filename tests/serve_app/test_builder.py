"""What the app builder hands Serve: each deployment's options as the settings say."""

from __future__ import annotations

from ray.serve import Application
from ray.serve.deployment import Deployment

from serve_app.builder import compose
from voiceq.settings import Settings


def deployments(app: Application) -> dict[str, Deployment]:
    """Every deployment in the application graph, by name."""
    found: dict[str, Deployment] = {}
    pending = [app]
    while pending:
        deployment = pending.pop()._bound_deployment
        found[deployment.name] = deployment
        pending += [a for a in (*deployment.init_args, *deployment.init_kwargs.values()) if isinstance(a, Application)]
    return found


def test_inference_replicas_setting_reaches_serve() -> None:
    # Ray 2.55 silently keeps num_replicas at 1 when a deployment is given an explicit version.
    graph = deployments(compose(Settings(inference_replicas=3)))
    assert graph["VoiceCloneInference"].num_replicas == 3


def test_deployments_carry_no_explicit_version() -> None:
    # Serve tells code changes from config changes itself (serve deploy); an explicit
    # version is deprecated and overrides replica counts.
    for name, deployment in deployments(compose(Settings())).items():
        assert deployment.version is None, name


def test_autoscaled_inference_has_no_fixed_replica_count() -> None:
    graph = deployments(compose(Settings(autoscale=True)))
    inference = graph["VoiceCloneInference"]
    assert inference._deployment_config.autoscaling_config is not None
    assert inference._deployment_config.autoscaling_config.min_replicas == 0


def test_the_deployments_that_open_local_files_run_on_the_head_node() -> None:
    # A SQLite file and a local folder are on the head's disk: a front desk or bookkeeping placed
    # on a GPU droplet would open an empty store of its own there.
    local = deployments(compose(Settings()))
    for name in ("Ingress", "JobManager"):
        assert local[name].ray_actor_options["resources"] == {"node:__internal_head__": 0.001}, name
        assert local[name].ray_actor_options["num_cpus"] == 0
    assert "resources" not in (local["VoiceCloneInference"].ray_actor_options or {})
    hosted = deployments(compose(Settings(convex_url="https://x.convex.cloud", s3_bucket="b")))
    assert all("resources" not in (d.ray_actor_options or {}) for d in hosted.values())
