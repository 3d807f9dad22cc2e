"""The ingress's wake: one request queued at the chosen size's handle, only to an empty fleet."""

from __future__ import annotations

import asyncio
from typing import Any

from deployments.wake import Waker


class Response:
    def __init__(self, done: asyncio.Event) -> None:
        self.done = done
        self.cancelled = False

    def __await__(self) -> Any:
        return self._wait().__await__()

    async def _wait(self) -> bool:
        await self.done.wait()
        return True

    def cancel(self) -> None:
        self.cancelled = True


class Handle:
    """A DeploymentHandle's shape: `handle.wake.remote()` -> an awaitable response."""

    def __init__(self) -> None:
        self.responses: list[Response] = []
        self.served = asyncio.Event()
        self.wake = self

    def remote(self) -> Response:
        response = Response(self.served)
        self.responses.append(response)
        return response


def test_an_empty_fleet_gets_one_wake_and_a_busy_one_none() -> None:
    async def scenario() -> None:
        handle = Handle()
        replicas = {"n": 0}
        waker = Waker(handle, ["VoiceCloneInference"], count_replicas=lambda: replicas["n"], timeout_s=5.0)  # type: ignore[arg-type]
        waker.poke()
        waker.poke()  # a wake is in flight: no second one
        await asyncio.sleep(0.05)
        assert len(handle.responses) == 1
        handle.served.set()  # Serve started a replica and served the wake
        await asyncio.sleep(0.05)
        assert not handle.responses[0].cancelled
        replicas["n"] = 1
        waker.poke()
        await asyncio.sleep(0.05)
        assert len(handle.responses) == 1 and waker.wakes_sent == 1

    asyncio.run(scenario())


def test_a_wake_nobody_serves_is_cancelled() -> None:
    async def scenario() -> None:
        handle = Handle()
        waker = Waker(handle, ["VoiceCloneInference"], count_replicas=lambda: 0, timeout_s=0.1)  # type: ignore[arg-type]
        waker.poke()
        await asyncio.sleep(0.3)
        assert [r.cancelled for r in handle.responses] == [True]

    asyncio.run(scenario())
