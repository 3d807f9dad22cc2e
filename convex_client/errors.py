"""What can go wrong when calling a Convex deployment, as exceptions a caller can act on.

    ConvexClientError
    ├── ConvexUnavailable      the deployment could not be reached or kept failing (network,
    │                          timeouts, 5xx, 429) after the client's bounded retries
    ├── ConvexRequestError     the deployment refused the request (4xx): bad key, bad path...
    │   └── ConvexAuthError    401/403: the deploy key is missing, wrong or lacks access
    └── ConvexFunctionError    the function ran and threw; `data` holds a ConvexError's payload

None of them carries the deploy key.
"""

from __future__ import annotations

from typing import Any


def _restore(cls: type, args: tuple, state: dict) -> BaseException:
    err = cls.__new__(cls)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err


class ConvexClientError(Exception):
    """Base of every error the Convex client raises."""

    def __reduce__(self) -> tuple:
        # Keyword-only constructor arguments survive pickling (errors may cross Ray processes).
        return (_restore, (type(self), self.args, self.__dict__))


class ConvexUnavailable(ConvexClientError):
    def __init__(self, message: str, *, path: str | None = None, attempts: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.attempts = attempts


class ConvexRequestError(ConvexClientError):
    def __init__(self, message: str, *, status_code: int, code: str | None = None, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.path = path


class ConvexAuthError(ConvexRequestError):
    pass


class ConvexFunctionError(ConvexClientError):
    """The function threw. For a `ConvexError`, `data` is the value it was thrown with."""

    def __init__(self, message: str, *, path: str, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.data = data
