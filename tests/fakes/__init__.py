"""Test-only stand-ins for the production services, and pytest fixtures around them.

- `convex_standin.running_convex_standin()`: the real convex/ functions behind Convex's HTTP API.
- `s3_server.running_s3_server()`: moto's S3 server on a free local port.

Import the fixtures into a conftest or test module to use them:

    from tests.fakes import fake_convex, fake_convex_session, fake_s3  # noqa: F401
"""

from __future__ import annotations

from typing import Iterator

import pytest

from .convex_standin import ConvexStandin, running_convex_standin
from .s3_server import S3Server, running_s3_server


@pytest.fixture(scope="session")
def fake_convex_session() -> Iterator[ConvexStandin]:
    """One stand-in process for the session."""
    with running_convex_standin() as standin:
        yield standin


@pytest.fixture
def fake_convex(fake_convex_session: ConvexStandin) -> ConvexStandin:
    """The session's stand-in, emptied for this test."""
    fake_convex_session.reset()
    return fake_convex_session


@pytest.fixture(scope="session")
def fake_s3() -> Iterator[S3Server]:
    with running_s3_server() as server:
        yield server


__all__ = [
    "ConvexStandin",
    "S3Server",
    "fake_convex",
    "fake_convex_session",
    "running_convex_standin",
    "running_s3_server",
    "fake_s3",
]
