"""The inference deployment's batch limits change at run time, in place: same replica, same
loaded model, when an operator deploys a config with new limits (`serve deploy`)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.server import VoiceqServer, wait_until

pytestmark = pytest.mark.slow

APP = "voiceq-config"


def describe() -> dict:
    from ray import serve

    return serve.get_deployment_handle("VoiceCloneInference", app_name=APP).describe.remote().result()


def deploy_config(args: dict[str, Any], batch: dict[str, Any] | None = None) -> None:
    """What `serve deploy config.yaml` sends the controller: the app by import path, its
    builder's arguments, and per-deployment overrides."""
    from ray.serve._private.api import serve_start
    from ray.serve.schema import ServeDeploySchema

    app: dict[str, Any] = {"name": APP, "route_prefix": "/config", "import_path": "serve_app:build_app",
                           "args": args}
    if batch:
        app["deployments"] = [{"name": "VoiceCloneInference", "user_config": batch}]
    serve_start().deploy_apps(ServeDeploySchema.model_validate({"applications": [app]}), _blocking=True)


def test_serve_deploy_changes_batch_limits_without_restarting_the_replica(voiceq_server: VoiceqServer) -> None:
    from ray import serve

    settings = voiceq_server.settings_for(environment="development", data_dir=voiceq_server.base_dir / "config")
    args = {"environment": "development", "data_dir": str(settings.data_dir),
            "chatterbox_ckpt_dir": str(settings.chatterbox_ckpt_dir), "auth": "off",
            "inference_num_cpus": str(settings.inference_num_cpus)}
    try:
        deploy_config(args)
        before = wait_until(describe, timeout_s=180, what="the config-deployed app")
        assert before["max_batch_size"] == settings.max_batch_size
        deploy_config(args, batch={"max_batch_size": 3, "token_budget": 500, "batch_wait_s": 0.05})
        after = wait_until(lambda: (d := describe())["max_batch_size"] == 3 and d, timeout_s=60,
                           what="the new limits")
        assert after["pid"] == before["pid"]  # reconfigured in place: no restart, no model reload
        assert (after["token_budget"], after["batch_wait_s"]) == (500, 0.05)
    finally:
        serve.delete(APP)
