"""The provider's domain errors.

Everything that goes wrong talking to DigitalOcean surfaces as one `DigitalOceanError`,
raised `from` the vendor (pydo / azure-core) exception so nothing above `droplets.api`
needs to know which HTTP stack is underneath.
"""

from __future__ import annotations


class DigitalOceanError(Exception):
    """A DigitalOcean API call failed.

    `status_code` is the HTTP status (None when no response arrived), `error_id` DigitalOcean's
    short error id (e.g. ``not_found``, ``too_many_requests``, ``unprocessable_entity``),
    `message` its human-readable message, `operation` what we were doing (never the token).
    `outcome_unknown` is True when the request reached DigitalOcean but no verdict came back
    (a read timeout, a 5xx on a create): the change may or may not have happened.
    """

    def __init__(
        self,
        operation: str,
        message: str,
        *,
        status_code: int | None = None,
        error_id: str | None = None,
        outcome_unknown: bool = False,
    ) -> None:
        self.operation = operation
        self.message = message
        self.status_code = status_code
        self.error_id = error_id
        self.outcome_unknown = outcome_unknown
        status = f"HTTP {status_code}" if status_code is not None else "no response"
        code = f" {error_id}" if error_id else ""
        super().__init__(f"DigitalOcean {operation} failed ({status}{code}): {message}")

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only arguments do not survive default exception pickling (Ray ships errors
        # between processes), so rebuild explicitly.
        return (
            _rebuild_error,
            (
                self.operation,
                self.message,
                self.status_code,
                self.error_id,
                self.outcome_unknown,
            ),
        )


def _rebuild_error(
    operation: str,
    message: str,
    status_code: int | None,
    error_id: str | None,
    outcome_unknown: bool,
) -> DigitalOceanError:
    return DigitalOceanError(
        operation,
        message,
        status_code=status_code,
        error_id=error_id,
        outcome_unknown=outcome_unknown,
    )


class ForeignDropletError(RuntimeError):
    """Refused to act on a droplet that does not carry this cluster's tag."""

    def __init__(self, droplet_id: str, cluster_name: str) -> None:
        self.droplet_id = droplet_id
        self.cluster_name = cluster_name
        super().__init__(
            f"droplet {droplet_id} is not tagged for Ray cluster {cluster_name!r}; "
            "the provider never touches droplets outside its cluster"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (ForeignDropletError, (self.droplet_id, self.cluster_name))
