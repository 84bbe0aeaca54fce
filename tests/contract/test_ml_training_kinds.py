"""Each training kind end to end through the real clients: what reaches the fake on submit (inputs
rendered from the copy's output, the signal's identity in the tags), the result after the wait, and a
resubmit (a rerun, in a fresh process) that reattaches without creating anything at the fake."""

from __future__ import annotations

import pytest

from drift_retrain.backends.azure.training import (
    BatchEndpointTraining,
    PipelineJobTraining,
    PublishedPipelineTraining,
    training_pipeline,
)
from drift_retrain.backends.azure.workspace_rest import RestError
from drift_retrain.names import SIGNAL_TAG, training_run_key
from tests.contract.ml_fixtures import (
    PIPELINE_YAML,
    QUICK,
    WS,
    copied,
    signal,
    target,
)

INPUTS = {"training_data": "{copy_output_uri}", "window_end": "{window_end_date}"}


def _rerun(session, config, ledger):
    """A fresh TrainingPipeline, as a rerun in a new process would build it."""
    return training_pipeline(session, config, ledger)


def test_published_pipeline_submits_as_the_sdk_does_and_waits_on_the_pipelines_service(fake, ml_session, ledger):
    """The submit body azureml-pipeline-core 1.62.0 sends (PipelineSubmissionInfo: lowercase ``tags``, every
    parameter ``str(value)``), the status from the pipelines service's StatusCode (Finished -> Completed), not
    from run history, and a rerun that reattaches without a second submit."""
    config = target({"kind": "published_pipeline", "pipeline_id": "5f1c0b7e-pub",
                     "inputs": {**INPUTS, "epochs": 20, "learning_rate": 0.05, "early_stop": True},
                     "experiment_name": "retrain-{model_name}"})
    pipeline = training_pipeline(ml_session, config, ledger)
    assert isinstance(pipeline, PublishedPipelineTraining)
    fake.ml.script_next_job(QUICK, metrics={"accuracy": 0.88})
    sig = signal("drift_v1")
    data = copied(sig)

    run_id = pipeline.submit(sig, data)
    assert ledger.get("training", _key(sig))["run_id"] == run_id  # recorded before any wait
    result = pipeline.wait(run_id)

    [submit] = fake.sent("POST", "/PipelineRuns/PipelineSubmit/5f1c0b7e-pub")
    assert submit.path == f"/pipelines/v1.0{WS}/PipelineRuns/PipelineSubmit/5f1c0b7e-pub"  # the workspace's regional host
    assert submit.headers["authorization"].startswith("Bearer ")
    assert submit.body["ExperimentName"] == "retrain-credit-default"
    assert submit.body["ParameterAssignments"] == {
        "training_data": data.output_uri, "window_end": "2019-07-05", "epochs": "20", "learning_rate": "0.05",
        "early_stop": "True",
    }
    assert "Tags" not in submit.body
    assert submit.body["tags"][SIGNAL_TAG] == sig.identity
    assert submit.body["tags"]["copy.run_id"] == "adf-run-7"
    assert fake.ml.jobs[run_id].tags[SIGNAL_TAG] == sig.identity  # the service read them
    polls = fake.sent("GET", f"/pipelines/v1.0{WS}/PipelineRuns/{run_id}")
    assert polls and all(r.path == f"/pipelines/v1.0{WS}/PipelineRuns/{run_id}" for r in polls)
    assert not [r for r in fake.sent("GET", "/history/v1.0") if r.path == f"/history/v1.0{WS}/runs/{run_id}"]
    assert (result.job_id, result.status, result.metrics) == (run_id, "Completed", {"accuracy": 0.88})
    assert result.model_uri == f"azureml://jobs/{run_id}/outputs/model/paths/model/"
    assert not result.reattached

    again = _rerun(ml_session, config, ledger)
    assert again.submit(sig, data) == run_id
    assert again.wait(run_id).reattached
    assert len(fake.sent("POST", "/PipelineRuns/")) == 1  # no second submit


def test_published_pipeline_goes_to_the_regional_host_the_workspace_names(fake, ml_session, ledger):
    """The submit, the pipelines service, run history and MLflow live on the hosts the workspace's discoveryUrl
    names, not on ARM."""
    regional = f"localhost:{fake.port}"  # the same fake under another name (its certificate covers both)
    fake.ml.regional_host = f"https://{regional}"
    pipeline = training_pipeline(ml_session, target({"kind": "published_pipeline", "pipeline_id": "p-regional"}), ledger)
    sig = signal("drift_v1_regional")

    pipeline.wait(pipeline.submit(sig, copied(sig)))

    [workspace] = fake.sent("GET", f"{WS}?api-version=")
    assert workspace.headers["host"] == f"127.0.0.1:{fake.port}"  # ARM
    [discovery] = fake.sent("GET", "/discovery")
    [submit] = fake.sent("POST", "/PipelineRuns/PipelineSubmit/p-regional")
    status = fake.sent("GET", f"/pipelines/v1.0{WS}/PipelineRuns/")
    [children] = fake.sent("GET", f"/history/v1.0{WS}/runs/")
    [mlflow] = fake.sent("GET", "/api/2.0/mlflow/runs/get")
    assert status and {r.headers["host"] for r in [discovery, submit, *status, children, mlflow]} == {regional}


def test_a_throttled_v1_submit_is_sent_again_after_retry_after_and_starts_one_run(fake, ml_session, ledger):
    """A 429 means the submit was not processed: ask again once Retry-After has passed (a 5xx is not retried:
    the service may have started the run, and only it knows the run id)."""
    import time

    fake.faults.retry_after = 0.3
    fake.faults.throttle["/PipelineRuns/PipelineSubmit/p-throttled"] = 2
    pipeline = training_pipeline(ml_session, target({"kind": "published_pipeline", "pipeline_id": "p-throttled"}), ledger)
    sig = signal("drift_v1_throttled")

    began = time.monotonic()
    run_id = pipeline.submit(sig, copied(sig))

    assert time.monotonic() - began >= 0.6  # two 429s, each with Retry-After: 0.3
    assert len(fake.sent("POST", "/PipelineRuns/PipelineSubmit/p-throttled")) == 3
    assert [j.name for j in fake.ml.jobs.values()] == [run_id]
    assert ledger.get("training", _key(sig))["run_id"] == run_id


def test_a_v1_submit_answered_503_is_not_sent_again(fake, ml_session, ledger):
    fake.faults.errors["/PipelineRuns/PipelineSubmit/p-503"] = 1
    pipeline = training_pipeline(ml_session, target({"kind": "published_pipeline", "pipeline_id": "p-503"}), ledger)
    sig = signal("drift_v1_503")

    with pytest.raises(RestError, match="HTTP 503"):
        pipeline.submit(sig, copied(sig))

    assert len(fake.sent("POST", "/PipelineRuns/PipelineSubmit/p-503")) == 1
    assert ledger.get("training", _key(sig)) is None


def test_pipeline_endpoint_submits_by_endpoint_id_to_a_configured_regional_host(fake, ml_session, ledger):
    config = target({"kind": "published_pipeline", "pipeline_endpoint_id": "ep-1234", "regional_host": fake.url})
    pipeline = training_pipeline(ml_session, config, ledger)
    sig = signal("drift_v1_endpoint")

    pipeline.wait(pipeline.submit(sig, copied(sig)))

    assert fake.sent("POST", f"/pipelines/v1.0{WS}/PipelineRuns/PipelineEndpointSubmit/Id/ep-1234")
    assert not fake.sent("GET", "/discovery")  # the configured host is used as is


def test_pipeline_job_from_yaml_is_created_under_the_signal_name(fake, ml_session, ledger):
    config = target({"kind": "pipeline_job", "yaml": str(PIPELINE_YAML), "inputs": INPUTS, "compute": "gpu-cluster"})
    pipeline = training_pipeline(ml_session, config, ledger)
    assert isinstance(pipeline, PipelineJobTraining)
    fake.ml.script_next_job(QUICK, metrics={"roc_auc": 0.93})
    sig = signal("drift_yaml")
    data = copied(sig)

    job_id = pipeline.submit(sig, data)
    result = pipeline.wait(job_id)

    assert job_id == _key(sig)
    [put] = fake.sent("PUT", f"/jobs/{job_id}")
    body = put.body["properties"]
    assert body["jobType"] == "Pipeline"
    assert body["experimentName"] == "drift-retrain-credit-default"
    assert body["inputs"]["training_data"] == {"uri": data.output_uri, "jobInputType": "uri_folder"}
    assert body["inputs"]["window_end"] == {"value": "2019-07-05", "jobInputType": "literal"}
    assert body["settings"]["default_compute"].endswith("/computes/gpu-cluster")
    assert body["tags"][SIGNAL_TAG] == sig.identity
    assert put.headers.get("x-azureml-token")  # the pipeline submit carries the ml.azure.com-audience token
    # the job GET path and api-version azure-ai-ml 1.35.2 was recorded sending (reference sdk-requests_*.jsonl)
    assert fake.sent("GET", f"{WS}/jobs/{job_id}?api-version=2024-01-01-preview")
    assert (result.status, result.metrics, result.reattached) == ("Completed", {"roc_auc": 0.93}, False)

    again = _rerun(ml_session, config, ledger)
    assert again.submit(sig, data) == job_id
    assert again.wait(job_id).reattached
    assert len(fake.sent("PUT", "/jobs/")) == 1  # the GET found it: no second PUT
    assert fake.ml.jobs[job_id].creates == 1


def test_pipeline_job_from_a_registered_pipeline_component(fake, ml_session, ledger):
    fake.ml.add_pipeline_component("train_pipeline", "3", WS, {"training_data": "uri_folder", "window_end": "string"},
                                   {"model": "uri_folder"})
    config = target({"kind": "pipeline_job", "component": "train_pipeline:3", "inputs": INPUTS, "compute": "cpu-cluster"})
    pipeline = training_pipeline(ml_session, config, ledger)
    sig = signal("drift_component")
    data = copied(sig)

    job_id = pipeline.submit(sig, data)
    result = pipeline.wait(job_id)

    assert fake.sent("GET", f"{WS}/components/train_pipeline/versions/3")
    [put] = fake.sent("PUT", f"/jobs/{job_id}")
    [node] = put.body["properties"]["jobs"].values()
    assert node["type"] == "pipeline"
    assert node["componentId"] == f"{WS}/components/train_pipeline/versions/3"
    assert node["inputs"]["training_data"] == {"uri": data.output_uri, "job_input_type": "uri_folder"}
    assert node["inputs"]["window_end"] == {"value": "2019-07-05", "job_input_type": "literal"}
    assert put.body["properties"]["outputs"] == {"model": {"jobOutputType": "uri_folder"}}
    assert put.body["properties"]["settings"]["default_compute"].endswith("/computes/cpu-cluster")
    assert put.body["properties"]["tags"][SIGNAL_TAG] == sig.identity
    assert result.status == "Completed"


def test_batch_endpoint_invoke_creates_a_named_job(fake, ml_session, ledger):
    fake.ml.add_batch_endpoint("retrain-credit", ("train-v2", "train-v1"))
    config = target({"kind": "batch_endpoint", "endpoint": "retrain-credit", "deployment": "train-v1",
                     "inputs": {**INPUTS, "epochs": 20}})
    pipeline = training_pipeline(ml_session, config, ledger)
    assert isinstance(pipeline, BatchEndpointTraining)
    fake.ml.script_next_job(QUICK, metrics={"f1": 0.7})
    sig = signal("drift_batch")
    data = copied(sig)

    job_id = pipeline.submit(sig, data)
    assert ledger.get("training", _key(sig))["run_id"] == job_id
    result = pipeline.wait(job_id)

    [invoke] = fake.sent("POST", "/batchscoring/")
    assert invoke.headers["azureml-model-deployment"] == "train-v1"
    props = invoke.body["properties"]
    assert props["name"] == job_id == _key(sig)
    assert props["inputData"]["training_data"] == {"jobInputType": "UriFolder", "uri": data.output_uri}
    assert props["inputData"]["window_end"]["value"] == "2019-07-05"
    assert props["properties"]["experimentName"] == "drift-retrain-credit-default"
    assert fake.sent("GET", f"/jobs/{job_id}")
    assert (result.status, result.metrics) == ("Completed", {"f1": 0.7})

    again = _rerun(ml_session, config, ledger)
    assert again.submit(sig, data) == job_id
    assert len(fake.sent("POST", "/batchscoring/")) == 1  # reattached, not invoked again


def _key(sig):  # the deterministic per-signal job name
    return training_run_key(sig)


@pytest.mark.parametrize("kind", ["published_pipeline", "pipeline_job", "batch_endpoint"])
def test_a_throttled_status_call_keeps_waiting(kind, fake, ml_session, ledger):
    """429 and 503 on status calls are waited out (Retry-After honoured), not reported as failures."""
    sections = {
        "published_pipeline": {"kind": "published_pipeline", "pipeline_id": "p1"},
        "pipeline_job": {"kind": "pipeline_job", "yaml": str(PIPELINE_YAML), "inputs": INPUTS},
        "batch_endpoint": {"kind": "batch_endpoint", "endpoint": "ep", "inputs": INPUTS},
    }
    fake.ml.add_batch_endpoint("ep")
    fake.faults.retry_after = 0.1
    pipeline = training_pipeline(ml_session, target(sections[kind]), ledger)
    sig = signal(f"drift_throttled_{kind}")
    job_id = pipeline.submit(sig, copied(sig))
    status_path = f"/pipelines/v1.0{WS}/PipelineRuns/{job_id}" if kind == "published_pipeline" else f"/jobs/{job_id}?"
    fake.faults.throttle[status_path] = 1
    fake.faults.errors[status_path] = 1

    assert pipeline.wait(job_id).status == "Completed"
    assert fake.faults.throttle[status_path] == 0 and fake.faults.errors[status_path] == 0


def test_batch_endpoint_without_a_deployment_goes_to_the_endpoints_default(fake, ml_session, ledger):
    """azure-ai-ml keeps an earlier invoke's deployment header; naming the default explicitly avoids it."""
    fake.ml.add_batch_endpoint("retrain-credit", ("train-v2", "train-v1"))
    named = training_pipeline(ml_session, target({"kind": "batch_endpoint", "endpoint": "retrain-credit",
                                                  "deployment": "train-v1", "inputs": INPUTS}), ledger)
    default = training_pipeline(ml_session, target({"kind": "batch_endpoint", "endpoint": "retrain-credit",
                                                    "inputs": INPUTS}), ledger)
    first, second = signal("drift_batch_named"), signal("drift_batch_default")

    named.submit(first, copied(first))
    default.submit(second, copied(second))

    assert [r.headers["azureml-model-deployment"] for r in fake.sent("POST", "/batchscoring/")] == ["train-v1", "train-v2"]
