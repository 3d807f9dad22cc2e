"""The inference deployment's batch limits change at run time, in place: same replica, same
loaded model."""

from __future__ import annotations

import pytest

from tests.support.server import VoiceqServer, wait_until

pytestmark = pytest.mark.slow


def describe() -> dict:
    from ray import serve

    return serve.get_deployment_handle("VoiceCloneInference", app_name="voiceq").describe.remote().result()


def test_reconfigure_changes_batch_limits_without_restarting_the_replica(voiceq_server: VoiceqServer) -> None:
    from ray import serve

    from serve_app.builder import compose

    settings = voiceq_server.deploy(voiceq_server.settings_for(environment="development"))
    before = describe()
    assert before["max_batch_size"] == settings.max_batch_size
    try:
        serve.run(compose(settings, batch={"max_batch_size": 3, "token_budget": 500, "batch_wait_s": 0.05}),
                  name="voiceq", route_prefix="/")
        after = wait_until(lambda: (d := describe())["max_batch_size"] == 3 and d, timeout_s=60,
                           what="the new limits")
        assert after["pid"] == before["pid"]  # reconfigured in place: no restart, no model reload
        assert (after["token_budget"], after["batch_wait_s"]) == (500, 0.05)
    finally:
        serve.run(compose(settings), name="voiceq", route_prefix="/")  # back to the shared settings
    assert describe()["max_batch_size"] == settings.max_batch_size
