"""The receiver in process, for the unit tests that post to it: its secret, a hand-off that records instead of
writing to Prefect, and ``post``. The fixtures (``configured``, ``recorder``, ``client``) are in conftest.py."""

from __future__ import annotations

import json
import uuid

from starlette.testclient import TestClient

from drift_retrain.intake.app import EVENTS_PATH
from drift_retrain.intake.handoff import HandedOff, HandoffUnavailable
from drift_retrain.names import flow_run_name

SECRET = "s3cret-value"
SECRET_ENV = r'secret_env = "DRIFT_RETRAIN_WEBHOOK_SECRET"'
EG_JSON = "application/json; charset=utf-8"


class RecordingHandoff:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.signals: list = []
        self.targets: list[str] = []
        self.runs: dict[str, HandedOff] = {}  # by signal identity, as Prefect's idempotency key dedupes

    async def hand_off_all(self, items, started_by="webhook") -> list[HandedOff]:
        items = list(items)
        if self.fail and items:
            raise HandoffUnavailable("Prefect is down")
        self.signals.extend(signal for signal, _ in items)
        self.targets.extend(target.name for _, target in items)
        handed = []
        for signal, target in items:
            if signal.identity in self.runs:
                first = self.runs[signal.identity]
                handed.append(HandedOff(first.flow_run_id, first.flow_run_name, created=False))
            else:
                run = HandedOff(flow_run_id=uuid.uuid4(), flow_run_name=flow_run_name(target, signal, started_by), created=True)
                self.runs[signal.identity] = run
                handed.append(run)
        return handed

    async def healthy(self) -> bool:
        return not self.fail

    async def __aenter__(self) -> "RecordingHandoff":
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass


def post(client: TestClient, body, code: str | None = SECRET, content_type: str = EG_JSON, headers: dict | None = None):
    params = {"code": code} if code is not None else {}
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(EVENTS_PATH, params=params, content=content, headers={"Content-Type": content_type, **(headers or {})})


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}
