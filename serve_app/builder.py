"""Build the Serve application from settings: ingress -> bookkeeping, ingress -> inference -> bookkeeping."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

from ray.serve import Application

from deployments import secrets
from deployments.autoscaling import autoscaling_config
from deployments.fleet_autoscaling import fleet_autoscaling_config
from deployments.inference import EngineFactory, InferenceDeployment, deployment_name
from deployments.job_manager import JobManagerDeployment
from voiceq.scaling import ScalingConfig
from voiceq.settings import Settings
from voiceq.sizing import GpuType, billing_from_cluster_config, choose_size, gpu_types_from_cluster_config

from .ingress import IngressDeployment

INFERENCE = "VoiceCloneInference"
# Ray's resource on the head node only (ray._common.constants.HEAD_NODE_RESOURCE_NAME).
HEAD_NODE = "node:__internal_head__"


def inference_options(settings: Settings, batch: dict[str, Any] | None = None,
                      model: str | None = None) -> dict[str, Any]:
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
        per_model = model if len(settings.served_models) > 1 else None  # each model scales on its own queue
        return {"autoscaling_config": autoscaling_config(settings, ScalingConfig.from_env(), per_model),
                "ray_actor_options": actor, "user_config": user_config, "max_ongoing_requests": ongoing}
    return {"num_replicas": settings.inference_replicas, "ray_actor_options": actor, "user_config": user_config,
            "max_ongoing_requests": ongoing}


def shutdown_options(settings: Settings) -> dict[str, float]:
    # Serve's defaults (20 s per replica, more with a batch in flight) kept Ctrl-C on `serve
    # run` waiting for most of a minute; jobs outlive their replica in the store anyway.
    return {"graceful_shutdown_timeout_s": settings.shutdown_grace_s,
            "graceful_shutdown_wait_loop_s": min(1.0, settings.shutdown_grace_s)}


def head_node_options(settings: Settings) -> dict[str, Any]:
    """A SQLite file and a local folder exist on the head node's disk only: the deployments that
    open them (the ingress's front desk and bookkeeping) are placed there. With Convex and S3
    they may run on any node."""
    if settings.convex_url and settings.s3_bucket:
        return {}
    return {"ray_actor_options": {"num_cpus": 0, "resources": {HEAD_NODE: 0.001}}}


def load_fleet(settings: Settings, scaling: ScalingConfig) -> tuple[list[GpuType], ScalingConfig]:
    """The GPU node types of `VOICEQ_FLEET_CONFIG` (a Ray cluster config) and the scaling
    config with its billing model; none without a fleet config or outside remote mode."""
    if not settings.fleet_config or settings.chatterbox_mode != "remote":
        return [], scaling
    import yaml

    cluster = yaml.safe_load(Path(settings.fleet_config).expanduser().read_text(encoding="utf-8"))
    gpus = sorted(gpu_types_from_cluster_config(cluster), key=lambda g: (g.hourly_usd, g.name))
    billing = billing_from_cluster_config(cluster)
    if billing is not None:
        scaling = dataclasses.replace(scaling, billing_increment_s=billing.increment_s,
                                      billing_minimum_s=billing.minimum_s)
    return gpus, scaling


def _wakes(settings: Settings, scaling: ScalingConfig) -> bool:
    # Serve's cold-start path starts a replica for the wake: only where the policy would start
    # one for a single job anyway.
    return settings.production and settings.autoscaling and scaling.min_jobs_to_start <= 1


def compose(settings: Settings, *, engine_factory: EngineFactory | None = None,
            batch: dict[str, Any] | None = None) -> Application:
    """The application for these settings. `engine_factory` swaps the model (the load test
    injects a fixed-cost engine this way); by default Chatterbox is loaded. `batch` overrides
    the inference deployment's batch limits (max_batch_size, batch_wait_s, token_budget)."""
    # No explicit deployment versions: Ray 2.55 drops `num_replicas` from `.options()` when a
    # version is given. `serve deploy` (and `serve run` of a config file) lets Serve tell a
    # user_config change, applied in place, from a code change, which rolls the replicas.
    grace = shutdown_options(settings)
    front = {**grace, **head_node_options(settings)}  # the deployments that open the store
    # Each deployment is bound with only the secrets it uses (deployments/secrets.py).
    jobs = JobManagerDeployment.options(**front).bind(secrets.for_bookkeeping(settings))
    ingress_settings, inference_settings = secrets.for_ingress(settings), secrets.for_inference(settings)
    scaling = ScalingConfig.from_env()
    gpus, scaling = load_fleet(settings, scaling) if settings.autoscaling else ([], scaling)
    if len(settings.served_models) > 1:
        # One inference deployment per served model (voiceq.models), each with its own
        # replicas, batches and queue-driven scaling: jobs of different models never share an
        # engine pass. (GPU-size fleets and cold-start wakes apply to a single served model.)
        by_model = {
            model: InferenceDeployment.options(
                name=deployment_name(model), **grace, **inference_options(settings, batch, model)
            ).bind(inference_settings, jobs, engine_factory, model)
            for model in settings.served_models
        }
        first = next(iter(by_model.values()))
        return IngressDeployment.options(**front).bind(ingress_settings, jobs, first, None, None, by_model)
    if not gpus:
        inference = InferenceDeployment.options(**grace, **inference_options(settings, batch)).bind(
            inference_settings, jobs, engine_factory, settings.served_models[0])
        wake = inference if _wakes(settings, scaling) else None
        return IngressDeployment.options(**front).bind(ingress_settings, jobs, inference, wake)
    # A fleet of GPU sizes: one inference deployment per size, the cheapest per hour keeping
    # the usual name; one plan for all (deployments.fleet_autoscaling).
    key = _fleet_key(settings, gpus)
    fleet = {}
    for i, gpu in enumerate(gpus):
        name = INFERENCE if i == 0 else f"{INFERENCE}-{gpu.name}"
        options = inference_options(settings, batch)
        options["autoscaling_config"] = fleet_autoscaling_config(settings, scaling, gpus, gpu.name, fleet=key)
        options["ray_actor_options"] = {**options["ray_actor_options"], "resources": {gpu.resource: 1}}
        fleet[name] = InferenceDeployment.options(name=name, **grace, **options).bind(
            inference_settings, jobs, engine_factory)
    one_job = choose_size(1, gpus, wait_target_s=scaling.wait_target_s, idle_s=scaling.idle_s,
                          billing=scaling.billing, max_replicas=1).gpu
    wake_name = INFERENCE if one_job == gpus[0] else f"{INFERENCE}-{one_job.name}"
    wake = fleet[wake_name] if _wakes(settings, scaling) else None
    return IngressDeployment.options(**front).bind(ingress_settings, jobs, fleet[INFERENCE], wake, fleet)


def _fleet_key(settings: Settings, gpus: list[GpuType]) -> str:
    """Names the plan the policies of one app share in Serve's controller (deployments.fleet_board)."""
    digest = hashlib.sha256(repr((dataclasses.astuple(settings), gpus)).encode())  # secrets hashed, never shown
    return digest.hexdigest()[:16]


def build_app(args: dict[str, Any]) -> Application:
    """Serve's application builder: `serve run serve_app:build_app environment=production ...`.
    Arguments override the environment variables, by setting name."""
    return compose(Settings.from_env(**(args or {})))
