"""Why drift details could not be had, in words an operator can act on: one wording for v1 and v2 details."""

from __future__ import annotations

from drift_retrain.backends.azure.workspace_rest import RestError
from drift_retrain.results import DriftDetails


def why(exc: RestError) -> str:
    """A service refusal as a reason; 401/403 name the role that reads runs and drift results."""
    message = exc.message[:300]  # the service's own words, bounded
    if exc.status_code == 404:
        return f"not found (HTTP 404: {message})"
    if exc.status_code in (401, 403):
        return (
            f"not readable by this identity (HTTP {exc.status_code}: {message}); it needs the "
            "AzureML Data Scientist role on the workspace"
        )
    return f"HTTP {exc.status_code}: {message}"


def unavailable(where: str, why: str, fallback: str = "the event's own data") -> DriftDetails:
    """Details that could not be had: the policy decides on ``fallback`` and the report says so."""
    return DriftDetails(available=False, source=f"no details for {where}: {why}; deciding on {fallback}")
