# The drift-retrain project image: one image for the Prefect server, the process workers, the webhook
# receiver and the sweep; each is a different command (deploy/compose.yaml, deploy/helm/, deploy/k8s/).
# Not built on the machine it was written on (no Docker there); tests/unit/test_deploy_files.py parses it.
#
#   docker build -t drift-retrain:0.1.0 .
#
# No secret is baked in: the config file is mounted at /etc/drift-retrain/drift-retrain.toml, the webhook
# secret comes from $DRIFT_RETRAIN_WEBHOOK_SECRET (the config's receiver.secret_env) at run time.
FROM python:3.11-slim

# The project's fixed path: prefect.yaml's pull step sets this working directory on every worker, so a
# flow run finds flows/, tasks/ and deployments/ here whatever host deployed it.
WORKDIR /opt/drift-retrain

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DRIFT_RETRAIN_CONFIG=/etc/drift-retrain/drift-retrain.toml \
    DRIFT_RETRAIN_WEBHOOK_PORT=8088 \
    PREFECT_HOME=/var/lib/drift-retrain/prefect

# Dependencies first (a layer that survives code edits), then the code. The `redis` extra is prefect-redis,
# which the Prefect server needs for Redis messaging (docs/scale-out.md); workers and receivers ignore it.
COPY pyproject.toml README.md ./
COPY drift_retrain/ drift_retrain/
RUN pip install ".[redis]"

COPY flows/ flows/
COPY tasks/ tasks/
COPY deployments/ deployments/
COPY prefect.yaml ./

# A non-root user owning only the state volume; the code stays root-owned and read-only to it.
RUN useradd --system --uid 10001 --home-dir /var/lib/drift-retrain --shell /usr/sbin/nologin drift-retrain \
    && mkdir -p /var/lib/drift-retrain /etc/drift-retrain \
    && chown drift-retrain /var/lib/drift-retrain
USER 10001

# The state dir (the config's state_dir should point here: local data, registry, persisted results).
VOLUME ["/var/lib/drift-retrain"]

# 8088: the webhook receiver; 4200: the Prefect API and UI; 8080: a worker's --with-healthcheck server.
EXPOSE 8088 4200 8080

ENTRYPOINT []
CMD ["drift-retrain", "webhook", "--host", "0.0.0.0", "--port", "8088"]
