"""The one path by which the Convex job store calls its functions: Convex's replies become
voiceq's typed errors (`JobNotFound`, `StaleLease`, `InvalidTransition`, `StoreUnavailable`)."""

from __future__ import annotations

from typing import Any, Mapping

from voiceq.errors import InvalidTransition, JobNotFound, StaleLease, StoreUnavailable

from .client import ConvexClient, Kind
from .errors import ConvexAuthError, ConvexFunctionError, ConvexRequestError, ConvexUnavailable

MODULE = "voiceCloneJobs"
DEPLOY_HINT = "deploy the functions with `npx convex deploy`"


class ConvexCalls:
    """Base of the Convex job store and its mixins (voice library, webhook outbox)."""

    client: ConvexClient

    def _call(self, kind: Kind, name: str, args: Mapping[str, Any], *, idempotent: bool = False,
              module: str = MODULE) -> Any:
        path = f"{module}:{name}"
        try:
            return self.client.call(kind, path, args, idempotent=idempotent or kind == "query")
        except ConvexFunctionError as err:
            raise _function_error(err) from err
        except ConvexAuthError as err:
            raise StoreUnavailable(f"Convex refused the deploy key: {err.message}") from err
        except ConvexRequestError as err:
            raise StoreUnavailable(str(err)) from err
        except ConvexUnavailable as err:
            raise StoreUnavailable(f"Convex not reachable: {err.message}") from err


def _function_error(err: ConvexFunctionError) -> Exception:
    data = err.data if isinstance(err.data, dict) else {}
    kind = data.get("kind")
    message = str(data.get("message") or err.message)
    if kind == "JobNotFound":
        return JobNotFound(str(data.get("jobId", "")))
    if kind == "StaleLease":
        return StaleLease(message)
    if kind == "InvalidTransition":
        return InvalidTransition(message)
    if "Could not find public function" in err.message:
        hint = f"; the job store's functions are internal: set CONVEX_DEPLOY_KEY, and {DEPLOY_HINT}"
    elif "Could not find" in err.message or "Validator" in err.message:
        hint = f"; {DEPLOY_HINT}"
    else:
        hint = ""
    return StoreUnavailable(f"Convex function {err.path} failed: {err.message}{hint}")
