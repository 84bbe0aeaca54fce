"""The Event Grid webhook receiver, as a process beside Prefect.

    drift-retrain webhook --host 127.0.0.1 --port 8088      (or: python -m deployments.webhook)

The receiver lives in ``drift_retrain.intake``; under another ASGI server use its factory:
``uvicorn --factory drift_retrain.intake.app:create_app`` (reads $DRIFT_RETRAIN_CONFIG, talks to
$PREFECT_API_URL).
"""

from drift_retrain.intake.app import serve

if __name__ == "__main__":
    serve()
