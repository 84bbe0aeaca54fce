"""drift-retrain: Azure ML drift alerts become safe, observable retraining, orchestrated by Prefect."""

__version__ = "0.1.0"
