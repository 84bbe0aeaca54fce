"""Which Prefect server a stand-alone command (``webhook``, ``limits``) talks to, refusing to guess.

Without an API URL, Prefect's client starts a throwaway in-process server with its database in
``~/.prefect`` (prefect/client/orchestration/__init__.py, ``get_client``: "create an ephemeral API if none
was provided"): limits created there protect nothing, and nothing a receiver hands off there ever runs.
"""

from __future__ import annotations

from drift_retrain.config import ConfigError


class ApiUrlMissing(ConfigError):
    """No Prefect server is named: a usage error, not a failure."""


def require_api_url() -> str:
    """The API URL from $PREFECT_API_URL or the active Prefect profile; ``ApiUrlMissing`` when neither sets one."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        raise ApiUrlMissing(
            "PREFECT_API_URL is not set: point it at your Prefect server, e.g. "
            "`export PREFECT_API_URL=http://127.0.0.1:4200/api` while `drift-retrain up` runs"
        )
    return url
