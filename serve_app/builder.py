"""Build the Serve application from settings: ingress -> bookkeeping, ingress -> inference -> bookkeeping."""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from deployments.autoscaling import autoscaling_config
from deployments.ingress import IngressDeployment
from deployments.inference import EngineFactory, InferenceDeployment
from deployments.job_manager import JobManagerDeployment
from voiceq.scaling import ScalingConfig
from voiceq.settings import Settings


def inference_options(settings: Settings, batch: dict[str, Any] | None = None) -> dict[str, Any]:
    # Batch limits travel as user_config, so `serve deploy` of a config with new limits
    # changes them in place, without restarting replicas or reloading the model.
    user_config = {"max_batch_size": settings.max_batch_size, "batch_wait_s": settings.batch_wait_s,
                   "token_budget": settings.token_budget, **(batch or {})}
    # @serve.batch only fills batches if a replica may hold that many requests at once.
    ongoing = max(32, 2 * int(user_config["max_batch_size"]))
    actor: dict[str, Any] = {"num_cpus": settings.inference_num_cpus}
    if settings.chatterbox_mode == "remote":
        # Remote mode: replicas only fit on GPU worker nodes, which Ray's autoscaler brings up
        # when a replica cannot be placed and removes when it stands idle.
        actor["num_gpus"] = 1
    if settings.autoscaling:
        # Replicas follow the job queue, from zero (VOICEQ_SCALE_* tune the policy).
        return {"autoscaling_config": autoscaling_config(settings, ScalingConfig.from_env()),
                "ray_actor_options": actor, "user_config": user_config, "max_ongoing_requests": ongoing}
    return {"num_replicas": settings.inference_replicas, "ray_actor_options": actor, "user_config": user_config,
            "max_ongoing_requests": ongoing}


def shutdown_options(settings: Settings) -> dict[str, float]:
    # Serve's defaults (20 s per replica, more with a batch in flight) kept Ctrl-C on `serve
    # run` waiting for most of a minute; jobs outlive their replica in the store anyway.
    return {"graceful_shutdown_timeout_s": settings.shutdown_grace_s,
            "graceful_shutdown_wait_loop_s": min(1.0, settings.shutdown_grace_s)}


def compose(settings: Settings, *, engine_factory: EngineFactory | None = None,
            batch: dict[str, Any] | None = None) -> Application:
    """The application for these settings. `engine_factory` swaps the model (the load test
    injects a fixed-cost engine this way); by default Chatterbox is loaded. `batch` overrides
    the inference deployment's batch limits (max_batch_size, batch_wait_s, token_budget)."""
    # No explicit deployment versions: Ray 2.55 drops `num_replicas` from `.options()` when a
    # version is given. `serve deploy` (and `serve run` of a config file) lets Serve tell a
    # user_config change, applied in place, from a code change, which rolls the replicas.
    grace = shutdown_options(settings)
    jobs = JobManagerDeployment.options(**grace).bind(settings)
    inference = InferenceDeployment.options(**grace, **inference_options(settings, batch)).bind(
        settings, jobs, engine_factory)
    return IngressDeployment.options(**grace).bind(settings, jobs, inference)


def build_app(args: dict[str, Any]) -> Application:
    """Serve's application builder: `serve run serve_app:build_app environment=production ...`.
    Arguments override the environment variables, by setting name."""
    return compose(Settings.from_env(**(args or {})))
