"""Build the Serve application from settings: ingress -> bookkeeping, ingress -> inference -> bookkeeping."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

from ray.serve import Application

from deployments import secrets
from deployments.autoscaling import autoscaling_config
from deployments.ingress import IngressDeployment
from deployments.inference import EngineFactory, InferenceDeployment, default_engine_factory
from deployments.job_manager import JobManagerDeployment
from voiceq.scaling import ScalingConfig
from voiceq.settings import Settings


def inference_options(settings: Settings, batch: dict[str, Any] | None = None) -> dict[str, Any]:
    # Batch limits travel as user_config, so `serve deploy` (or `compose(..., batch=...)`)
    # changes them in place, without restarting replicas.
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


_PACKAGES = ("voiceq", "serve_app", "deployments", "convex_client")


def code_version(settings: Settings, engine_factory: EngineFactory | None) -> str:
    """A deployment version for Serve: the same code, settings and engine give the same
    version, so redeploying an unchanged app restarts nothing and a change of batch limits
    alone (user_config) is applied in place; any change of code or settings rolls replicas."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]
    for package in _PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    digest.update(repr(dataclasses.astuple(settings)).encode())  # secrets included: hashed, never shown
    factory = engine_factory or default_engine_factory
    digest.update(f"{factory.__module__}.{factory.__qualname__}".encode())
    return digest.hexdigest()[:16]


def compose(settings: Settings, *, engine_factory: EngineFactory | None = None,
            batch: dict[str, Any] | None = None) -> Application:
    """The application for these settings. `engine_factory` swaps the model (the load test
    injects a fixed-cost engine this way); by default Chatterbox is loaded. `batch` overrides
    the inference deployment's batch limits (max_batch_size, batch_wait_s, token_budget),
    which a redeploy applies in place."""
    version = code_version(settings, engine_factory)
    # Each deployment is bound with only the secrets it uses (deployments/secrets.py).
    jobs = JobManagerDeployment.options(version=version).bind(secrets.for_bookkeeping(settings))
    inference = InferenceDeployment.options(version=version, **inference_options(settings, batch)).bind(
        secrets.for_inference(settings), jobs, engine_factory)
    return IngressDeployment.options(version=version).bind(secrets.for_ingress(settings), jobs, inference)


def build_app(args: dict[str, Any]) -> Application:
    """Serve's application builder: `serve run serve_app:build_app environment=production ...`.
    Arguments override the environment variables, by setting name."""
    return compose(Settings.from_env(**(args or {})))
