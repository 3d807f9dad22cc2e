"""Convex for voiceq: an HTTP API client and the Convex-backed job store."""

from .client import ConvexClient
from .errors import (
    ConvexAuthError,
    ConvexClientError,
    ConvexFunctionError,
    ConvexRequestError,
    ConvexUnavailable,
)

__all__ = [
    "ConvexAuthError",
    "ConvexClient",
    "ConvexClientError",
    "ConvexFunctionError",
    "ConvexRequestError",
    "ConvexUnavailable",
]
