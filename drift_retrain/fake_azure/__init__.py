"""A loopback fake of the Azure REST APIs the azure backend uses (tests, benchmarks, ``--azure-fake``)."""

from drift_retrain.fake_azure.scripts import RunScript, ScriptedRun
from drift_retrain.fake_azure.server import CLIENT_ID, CLIENT_SECRET, TENANT, FakeAzure

__all__ = ["CLIENT_ID", "CLIENT_SECRET", "TENANT", "FakeAzure", "RunScript", "ScriptedRun"]
