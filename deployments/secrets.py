"""Each deployment gets only the secrets it uses.

Serve stores a deployment's init arguments (pickled, in its controller's checkpoint) and ships
them to every replica, GPU droplets included. So the settings each deployment is bound with are
cut down to what its code reads:

| deployment | reads | gets |
|---|---|---|
| Ingress | API keys (auth), job store and blob storage (takes submissions and answers reads itself: serve_app/ingress.py), whether webhooks can be signed | API keys, Convex deploy key, S3 keys |
| JobManager (bookkeeping) | job store (Convex deploy key), blob storage (S3 keys), webhook secret | those |
| VoiceCloneInference | blob storage (S3 keys); reaches jobs only through bookkeeping | S3 keys |

A withheld secret that was set reads as `WITHHELD`, so checks of whether it is configured
(the ingress refusing `callback_url` without a webhook secret) keep working while the value
stays with the deployments that use it.
"""

from __future__ import annotations

from voiceq.settings import Settings

WITHHELD = "(withheld from this deployment)"


def _withhold(value: str | None) -> str | None:
    return WITHHELD if value else value


def for_ingress(settings: Settings) -> Settings:
    return settings.replace(webhook_secret=_withhold(settings.webhook_secret) or "")


def for_bookkeeping(settings: Settings) -> Settings:
    return settings.replace(api_keys=_withhold(settings.api_keys) or "")


def for_inference(settings: Settings) -> Settings:
    return settings.replace(
        convex_deploy_key=_withhold(settings.convex_deploy_key),
        api_keys=_withhold(settings.api_keys) or "",
        webhook_secret=_withhold(settings.webhook_secret) or "",
    )
