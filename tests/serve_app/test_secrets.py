"""What each deployment receives: the application as Serve stores it (each deployment's pickled
init arguments and options), searched for every secret. No Ray cluster needed."""

from __future__ import annotations

import cloudpickle
import pytest

from serve_app.builder import compose
from voiceq.settings import Settings

SECRETS = {
    "convex": "convex-deploy-key-0123456789",
    "s3_id": "AKIAEXAMPLEKEYID0000",
    "s3_secret": "s3-secret-access-key-abcdef",
    "api": "api-key-for-alice-xyz",
    "webhook": "whsec_d2ViaG9vay1zZWNyZXQtdmFsdWU=",
}

# Which secrets each deployment's code reads (deployments/secrets.py).
NEEDS = {
    "Ingress": {"api", "convex", "s3_id", "s3_secret"},  # it takes submissions and reads jobs itself
    "JobManager": {"convex", "s3_id", "s3_secret", "webhook"},
    "VoiceCloneInference": {"s3_id", "s3_secret"},
}


def deployments(app: object) -> dict[str, bytes]:
    """Each deployment's name -> everything Serve keeps for it, pickled (what reaches replicas)."""
    found: dict[str, bytes] = {}

    def walk(node: object) -> None:
        bound = getattr(node, "_bound_deployment", None)
        if bound is None:
            return
        own = [a for a in bound.init_args if getattr(a, "_bound_deployment", None) is None]
        found[bound.name] = cloudpickle.dumps((own, bound.init_kwargs, bound._deployment_config))
        for arg in bound.init_args:
            walk(arg)

    walk(app)
    return found


@pytest.mark.parametrize("autoscale", [False, True])
def test_each_deployment_gets_only_the_secrets_it_uses(autoscale: bool) -> None:
    settings = Settings(
        environment="production", convex_url="https://example.convex.cloud", convex_deploy_key=SECRETS["convex"],
        s3_bucket="voices", s3_access_key_id=SECRETS["s3_id"], s3_secret_access_key=SECRETS["s3_secret"],
        api_keys=f"alice:{SECRETS['api']}:admin", webhook_secret=SECRETS["webhook"], autoscale=autoscale,
    )
    stored = deployments(compose(settings))
    assert set(stored) == set(NEEDS)
    for name, blob in stored.items():
        present = {k for k, v in SECRETS.items() if v.encode() in blob}
        assert present == NEEDS[name], (name, present)


def test_the_ingress_still_knows_webhooks_can_be_signed() -> None:
    from deployments.secrets import for_ingress

    assert for_ingress(Settings(webhook_secret="s")).webhook_secret  # callback_url stays accepted
    assert not for_ingress(Settings()).webhook_secret  # and refused without a secret
