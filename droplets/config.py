"""The provider's settings, read from the cluster YAML's ``provider`` section.

The API token never appears in the YAML: it comes from an environment variable
(``DO_API_TOKEN`` by default) or, on the head node where ``ray up`` does not forward the
environment, from a file synced by ``file_mounts`` (mode 0600).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from droplets.api import DEFAULT_ENDPOINT, check_endpoint
from droplets.cloud_init import GPU_RUNTIMES
from droplets.firewall import FirewallError, FirewallSettings
from droplets.retries import RetryPolicy

DEFAULT_TOKEN_ENV = "DO_API_TOKEN"
DEFAULT_TOKEN_FILE = "~/.config/voiceq/do_api_token"
DEFAULT_RAY_PORT = 6379

logger = logging.getLogger(__name__)

_OPERATOR_TAG = re.compile(r"^[A-Za-z0-9:_-]{1,255}$")


class ConfigError(ValueError):
    """The provider or node configuration is unusable."""


def _float(config: Mapping[str, Any], key: str, default: float) -> float:
    value = config.get(key, default)
    try:
        result = float(value)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"provider.{key} must be a number, got {value!r}") from err
    if result < 0:
        raise ConfigError(f"provider.{key} must not be negative")
    return result


def _tags(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where} must be a list of tags")
    tags = tuple(str(tag) for tag in value)
    for tag in tags:
        if not _OPERATOR_TAG.match(tag):
            raise ConfigError(
                f"{where}: {tag!r} is not a valid DigitalOcean tag "
                "(letters, digits, ':', '-', '_'; at most 255 characters)"
            )
        if tag.startswith(("ray:", "ray-cluster:", "ray-launch:")):
            raise ConfigError(f"{where}: {tag!r} uses a prefix the provider reserves")
    return tags


@dataclass(frozen=True)
class ProviderSettings:
    region: str
    api_endpoint: str = DEFAULT_ENDPOINT
    api_token_env: str = DEFAULT_TOKEN_ENV
    api_token_file: str | None = DEFAULT_TOKEN_FILE
    vpc_uuid: str | None = None
    ssh_keys: tuple[str | int, ...] = ()
    extra_tags: tuple[str, ...] = ()
    head_address: str | None = None
    ray_port: int = DEFAULT_RAY_PORT
    cache_ttl_s: float = 5.0
    active_timeout_s: float = 900.0
    terminated_grace_s: float = 120.0
    request_timeout_s: float = 30.0
    create_timeout_s: float = 60.0
    start_ray_from_cloud_init: bool = True
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    prices: Mapping[str, float] = field(default_factory=dict)
    firewall: FirewallSettings = field(default_factory=FirewallSettings)

    @classmethod
    def from_provider_config(cls, config: Mapping[str, Any]) -> ProviderSettings:
        region = config.get("region")
        if not region:
            raise ConfigError("provider.region is required (e.g. atl1)")
        endpoint = str(config.get("api_endpoint") or DEFAULT_ENDPOINT)
        try:
            check_endpoint(endpoint)
        except ValueError as err:
            raise ConfigError(str(err)) from err
        retry_config = config.get("retry") or {}
        if not isinstance(retry_config, Mapping):
            raise ConfigError("provider.retry must be a mapping")
        try:
            retry = RetryPolicy(**dict(retry_config))
        except TypeError as err:
            raise ConfigError(f"provider.retry: {err}") from err
        prices_raw = config.get("prices") or {}
        try:
            prices = {str(k): float(v) for k, v in dict(prices_raw).items()}
        except (TypeError, ValueError) as err:
            raise ConfigError("provider.prices maps size slugs to $/hour") from err
        token_file = config.get("api_token_file", DEFAULT_TOKEN_FILE)
        try:
            firewall = FirewallSettings.from_provider_config(config)
        except FirewallError as err:
            raise ConfigError(str(err)) from err
        return cls(
            region=str(region),
            api_endpoint=endpoint,
            api_token_env=str(config.get("api_token_env") or DEFAULT_TOKEN_ENV),
            api_token_file=str(token_file) if token_file else None,
            vpc_uuid=config.get("vpc_uuid") or None,
            ssh_keys=tuple(config.get("ssh_keys") or ()),
            extra_tags=_tags(config.get("droplet_tags"), "provider.droplet_tags"),
            head_address=config.get("head_address") or None,
            ray_port=int(config.get("ray_port", DEFAULT_RAY_PORT)),
            cache_ttl_s=_float(config, "cache_ttl_s", 5.0),
            active_timeout_s=_float(config, "active_timeout_s", 900.0),
            terminated_grace_s=_float(config, "terminated_grace_s", 120.0),
            request_timeout_s=_float(config, "request_timeout_s", 30.0),
            create_timeout_s=_float(config, "create_timeout_s", 60.0),
            # With node updaters on, Ray SSHes in and starts Ray itself.
            start_ray_from_cloud_init=bool(config.get("disable_node_updaters", False)),
            retry=retry,
            prices=prices,
            firewall=firewall,
        )

    def read_token(self) -> str:
        token = os.environ.get(self.api_token_env, "").strip()
        if token:
            return token
        if self.api_token_file:
            path = Path(self.api_token_file).expanduser()
            if path.is_file():
                if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                    logger.warning(
                        "%s is readable by other users; `chmod 600` it", path
                    )
                token = path.read_text(encoding="utf-8").strip()
                if token:
                    return token
        raise ConfigError(
            f"no DigitalOcean API token: set {self.api_token_env} or write it to "
            f"{self.api_token_file or '(no token file configured)'}"
        )


@dataclass(frozen=True)
class NodeSettings:
    """One node type's ``node_config``."""

    size: str
    image: str | int
    region: str | None = None
    vpc_uuid: str | None = None
    ssh_keys: tuple[str | int, ...] | None = None
    tags: tuple[str, ...] = ()
    gpu_runtime: str = "none"
    setup_commands: tuple[str, ...] = ()
    # `python_requirements: head` in the node config: install the head's voiceq requirements
    # pinned to the head's versions (droplets.requirements); a list: exactly those.
    head_requirements: bool = False
    python_requirements: tuple[str, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    ray_executable: str = "ray"
    user_data: str | None = None
    monitoring: bool = True
    ipv6: bool = False
    backups: bool = False

    @classmethod
    def from_node_config(cls, config: Mapping[str, Any]) -> NodeSettings:
        size = config.get("size")
        image = config.get("image")
        if not size or not image:
            raise ConfigError("node_config needs a size and an image")
        runtime = str(config.get("gpu_runtime", "none"))
        if runtime not in GPU_RUNTIMES:
            raise ConfigError(f"node_config.gpu_runtime must be one of {GPU_RUNTIMES}")
        commands = config.get("setup_commands") or ()
        if not isinstance(commands, (list, tuple)):
            raise ConfigError("node_config.setup_commands must be a list of shell commands")
        environment = config.get("environment") or {}
        if not isinstance(environment, Mapping):
            raise ConfigError("node_config.environment must be a mapping")
        requirements = config.get("python_requirements") or ()
        if requirements != "head" and not (
            isinstance(requirements, (list, tuple)) and all(isinstance(r, str) for r in requirements)
        ):
            raise ConfigError("node_config.python_requirements must be `head` or a list of pip requirements")
        ssh_keys = config.get("ssh_keys")
        return cls(
            size=str(size),
            image=image if isinstance(image, int) else str(image),
            region=config.get("region") or None,
            vpc_uuid=config.get("vpc_uuid") or None,
            ssh_keys=tuple(ssh_keys) if ssh_keys is not None else None,
            tags=_tags(config.get("tags"), "node_config.tags"),
            gpu_runtime=runtime,
            setup_commands=tuple(str(c) for c in commands),
            head_requirements=requirements == "head",
            python_requirements=() if requirements == "head" else tuple(requirements),
            environment={str(k): str(v) for k, v in environment.items()},
            ray_executable=str(config.get("ray_executable", "ray")),
            user_data=config.get("user_data") or None,
            monitoring=bool(config.get("monitoring", True)),
            ipv6=bool(config.get("ipv6", False)),
            backups=bool(config.get("backups", False)),
        )


def ssh_fingerprint(public_key: str) -> str:
    """DigitalOcean's fingerprint of an OpenSSH public key: MD5 of the key blob, colon hex."""
    fields = public_key.split()
    if len(fields) < 2:
        raise ConfigError("not an OpenSSH public key line")
    try:
        blob = base64.b64decode(fields[1], validate=True)
    except (binascii.Error, ValueError) as err:
        raise ConfigError("not an OpenSSH public key line") from err
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))
