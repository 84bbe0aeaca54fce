"""The per-model retrain limits: their names, one per model, and which acquisition failures are retried."""

from __future__ import annotations

import httpx
import pytest

from drift_retrain.concurrency import _prefect_unavailable, model_limits
from drift_retrain.config import load_settings
from drift_retrain.names import limit_name
from drift_retrain.testing import local_target, write_config


def test_one_limit_per_model_named_in_the_characters_prefect_takes(tmp_path) -> None:
    extra = local_target("a", ["a-monitor"], model_name="Credit_Default.v2") + local_target("b", ["b-monitor"], model_name="credit-default")
    settings = load_settings(write_config(tmp_path, extra=extra))
    assert limit_name("Credit_Default.v2") == "drift-retrain-model-credit-default-v2"
    # the demo's target and target b retrain one model: one limit between them
    assert model_limits(settings) == ["drift-retrain-model-credit-default", "drift-retrain-model-credit-default-v2"]


def _failure(cause: BaseException) -> Exception:
    try:
        raise RuntimeError("Unable to acquire concurrency slots") from cause
    except RuntimeError as exc:
        return exc


def _status(code: int) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "http://prefect/api/v2/concurrency_limits/increment-with-lease")
    return httpx.HTTPStatusError("busy", request=request, response=httpx.Response(code, request=request))


@pytest.mark.parametrize(
    ("cause", "retried"),
    [(_status(503), True), (_status(500), True), (httpx.ConnectError("refused"), True), (_status(404), False), (_status(422), False)],
)
def test_only_prefect_being_unavailable_is_retried(cause, retried) -> None:
    assert _prefect_unavailable(_failure(cause)) is retried


def test_a_missing_limit_is_not_retried() -> None:
    assert not _prefect_unavailable(RuntimeError("Concurrency limits ['x'] must be created before acquiring slots"))
