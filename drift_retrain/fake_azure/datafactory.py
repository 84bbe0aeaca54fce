"""Fake Data Factory (ARM, api-version 2018-06-01). To be implemented: see the issue-4 contract."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import BaseRoute

if TYPE_CHECKING:
    from drift_retrain.fake_azure.server import FakeAzure


class FakeDataFactory:
    def __init__(self, fake: "FakeAzure") -> None:
        self.fake = fake

    def routes(self) -> list[BaseRoute]:
        return []
