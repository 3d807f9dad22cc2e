"""A real voiceq Serve app on a real local Ray cluster, for tests that drive it over HTTP.

One Ray cluster serves the whole test session; `VoiceqServer.deploy(...)` (re)deploys the app
with the settings a test needs and returns when it answers. Redeploying with the settings
already deployed is free, so tests that share settings share replicas (and warm models).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx

from voiceq.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], Any], *, timeout_s: float, interval_s: float = 0.2, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)


@dataclass
class VoiceqServer:
    port: int
    checkpoint_dir: Path
    base_dir: Path
    settings: Settings | None = None
    engine_factory: Callable | None = None
    _deployments: int = field(default=0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kwargs.pop("timeout", 300), **kwargs)

    def settings_for(self, *, data_dir: Path | None = None, **overrides: Any) -> Settings:
        defaults: dict[str, Any] = dict(
            environment="development",
            data_dir=data_dir or (self.base_dir / "data"),
            chatterbox_ckpt_dir=self.checkpoint_dir,
            chatterbox_device="cpu",
            lease_s=30.0,
            poll_interval_s=0.3,
            batch_wait_s=0.1,
            # Production turns API keys on by default; tests of other things leave them off,
            # and the auth tests turn them on explicitly.
            auth="off",
        )
        defaults.update(overrides)
        return Settings(**defaults)

    def deploy(self, settings: Settings, *, engine_factory: Callable | None = None, force: bool = False) -> Settings:
        from ray import serve

        from serve_app.builder import compose

        if not force and settings == self.settings and engine_factory is self.engine_factory:
            return settings
        serve.run(compose(settings, engine_factory=engine_factory), name="voiceq", route_prefix="/")
        self.settings, self.engine_factory = settings, engine_factory
        self._deployments += 1
        with self.client() as c:
            wait_until(lambda: _ready(c), timeout_s=180, what="the app to answer /ready")
        return settings

    def undeploy(self) -> None:
        from ray import serve

        serve.delete("voiceq")
        self.settings = None


def _ready(client: httpx.Client) -> bool:
    try:
        return client.get("/ready").status_code == 200
    except httpx.HTTPError:
        return False
