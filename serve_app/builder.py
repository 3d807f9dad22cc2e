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


def inference_options(settings: Settings) -> dict[str, Any]:
    actor: dict[str, Any] = {"num_cpus": settings.inference_num_cpus}
    if settings.chatterbox_mode == "remote":
        # Remote mode: replicas only fit on GPU worker nodes, which Ray's autoscaler brings up
        # when a replica cannot be placed and removes when it stands idle.
        actor["num_gpus"] = 1
    if settings.autoscaling:
        # Replicas follow the job queue, from zero (VOICEQ_SCALE_* tune the policy).
        return {"autoscaling_config": autoscaling_config(settings, ScalingConfig.from_env()),
                "ray_actor_options": actor}
    return {"num_replicas": settings.inference_replicas, "ray_actor_options": actor}


def compose(settings: Settings, *, engine_factory: EngineFactory | None = None) -> Application:
    """The application for these settings. `engine_factory` swaps the model (the load test
    injects a fixed-cost engine this way); by default Chatterbox is loaded."""
    jobs = JobManagerDeployment.bind(settings)
    inference = InferenceDeployment.options(**inference_options(settings)).bind(settings, jobs, engine_factory)
    return IngressDeployment.bind(settings, jobs, inference)


def build_app(args: dict[str, Any]) -> Application:
    """Serve's application builder: `serve run serve_app:build_app environment=production ...`.
    Arguments override the environment variables, by setting name."""
    return compose(Settings.from_env(**(args or {})))
