"""The real `mlflow` client against a live `flow server` (MLFLOW_TRACKING_URI).

Run by tests/tracking.rs with the venv's python. Each check asserts that what a script
logs comes back exactly, or that a bad request fails with MLflow's error code. Prints one
`ok <name>` line per check; any failure raises (exit status 1).
"""

import math
import os
import random
import sys
import tempfile
import time

import mlflow
import requests
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException

CLIENT = MlflowClient()
CHECKS = []


def check(function):
    CHECKS.append(function)
    return function


def error_code(call):
    """The error_code of the MlflowException `call` raises."""
    try:
        call()
    except MlflowException as error:
        return error.error_code
    raise AssertionError("expected an MlflowException")


def write(directory, name, data):
    path = os.path.join(directory, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
    return path


@check
def training_script_round_trips_exactly():
    mlflow.set_experiment("suite-training")
    values = [0.1, 1 / 3, 1e-300, -2.5e10, 123456789.123456789, 0.0, -0.0]
    blob = random.Random(7).randbytes(300_000)
    with tempfile.TemporaryDirectory() as scratch:
        with mlflow.start_run(run_name="train-smd", tags={"dataset": "SMD", "note": "ünïcode ✓"}) as run:
            mlflow.log_param("lr", 0.001)
            mlflow.log_params({"epochs": 30, "optimizer": "adam", "window": "100"})
            for step, value in enumerate(values):
                mlflow.log_metric("exact", value, step=step)
            mlflow.log_metrics({"f1": 0.8034, "precision": 0.75}, step=3)
            mlflow.log_metric("diverged", float("nan"), step=1)
            mlflow.log_metric("unbounded", float("inf"))
            mlflow.set_tag("stage", "candidate")
            mlflow.set_tags({"owner": "ana", "gpu": "none"})
            mlflow.log_artifact(write(scratch, "report.txt", b"POT 0.8034\n"))
            mlflow.log_artifact(write(scratch, "weights.bin", blob), artifact_path="model")
            tree = os.path.join(scratch, "tree")
            write(tree, "a/b/deep.json", b"{}")
            write(tree, "top.csv", b"x,y\n1,2\n")
            mlflow.log_artifacts(tree, artifact_path="plots")
            run_id = run.info.run_id
        fetched = CLIENT.get_run(run_id)
        assert fetched.info.status == "FINISHED", fetched.info.status
        assert fetched.info.run_name == "train-smd"
        assert fetched.info.end_time >= fetched.info.start_time
        assert fetched.data.params == {"lr": "0.001", "epochs": "30", "optimizer": "adam", "window": "100"}, fetched.data.params
        assert fetched.data.metrics["exact"] == values[-1]
        assert fetched.data.metrics["f1"] == 0.8034 and fetched.data.metrics["precision"] == 0.75
        assert math.isnan(fetched.data.metrics["diverged"])
        assert fetched.data.metrics["unbounded"] == float("inf")
        for key, value in {"dataset": "SMD", "note": "ünïcode ✓", "stage": "candidate", "owner": "ana", "mlflow.runName": "train-smd"}.items():
            assert fetched.data.tags[key] == value, (key, fetched.data.tags.get(key))
        history = CLIENT.get_metric_history(run_id, "exact")
        assert [m.value for m in history] == values, [m.value for m in history]
        assert [m.step for m in history] == list(range(len(values)))
        top = sorted((f.path, f.is_dir) for f in CLIENT.list_artifacts(run_id))
        assert top == [("model", True), ("plots", True), ("report.txt", False)], top
        assert [(f.path, f.file_size) for f in CLIENT.list_artifacts(run_id, "model")] == [("model/weights.bin", len(blob))]
        downloaded = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="model/weights.bin", dst_path=scratch + "/out")
        with open(downloaded, "rb") as handle:
            assert handle.read() == blob, "binary artifact differs"
        tree = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="plots", dst_path=scratch + "/tree-out")
        with open(os.path.join(tree, "a/b/deep.json"), "rb") as handle:
            assert handle.read() == b"{}"
        with open(os.path.join(tree, "top.csv"), "rb") as handle:
            assert handle.read() == b"x,y\n1,2\n"


@check
def log_batch_and_paged_metric_history():
    experiment = CLIENT.create_experiment("suite-batch")
    run = CLIENT.create_run(experiment, run_name="batched")
    run_id = run.info.run_id
    # 30,000 points: more than the client's 25,000-point history page.
    points = [(i, math.sin(i) * 1e3, 1_700_000_000_000 + i) for i in range(30_000)]
    for start in range(0, len(points), 1000):
        CLIENT.log_batch(run_id, metrics=[Metric("wave", v, ts, s) for s, v, ts in points[start:start + 1000]])
    CLIENT.log_batch(run_id, params=[Param("batch", "1000")], tags=[RunTag("kind", "batch")])
    history = CLIENT.get_metric_history(run_id, "wave")
    assert len(history) == len(points), len(history)
    assert [(m.step, m.value, m.timestamp) for m in history] == points
    fetched = CLIENT.get_run(run_id)
    latest = {m.key: m for m in fetched.data._metric_objs}
    assert (latest["wave"].step, latest["wave"].value, latest["wave"].timestamp) == points[-1]
    assert fetched.data.params == {"batch": "1000"} and fetched.data.tags["kind"] == "batch"
    CLIENT.set_terminated(run_id)


@check
def search_runs_with_filters_order_and_pages():
    experiment = CLIENT.create_experiment("suite-search")
    ids = {}
    for index in range(12):
        run = CLIENT.create_run(experiment, run_name=f"sweep-{index:02d}", tags={"family": "gat" if index % 2 else "lstm"})
        CLIENT.log_param(run.info.run_id, "lr", str(10 ** -(index % 4)))
        CLIENT.log_metric(run.info.run_id, "f1", index / 10, step=0)
        CLIENT.set_terminated(run.info.run_id, status="FINISHED" if index < 10 else "FAILED")
        ids[index] = run.info.run_id

    def found(filter_string="", order_by=None, **kwargs):
        runs = mlflow.search_runs(experiment_ids=[experiment], filter_string=filter_string, order_by=order_by, output_format="list", **kwargs)
        return [run.info.run_id for run in runs]

    assert found("metrics.f1 > 0.85") == [ids[11], ids[10], ids[9]], "newest first by default"
    assert found("metrics.f1 >= 0.3 and metrics.f1 < 0.6", order_by=["metrics.f1 ASC"]) == [ids[3], ids[4], ids[5]]
    assert set(found("params.lr = '0.01'")) == {ids[2], ids[6], ids[10]}
    assert set(found("tags.family = 'gat' and attributes.status = 'FAILED'")) == {ids[11]}
    assert set(found("attributes.run_name LIKE 'sweep-0%' and params.lr != '1'")) == {ids[i] for i in range(1, 10) if i % 4 != 0}
    assert set(found("run_name ILIKE 'SWEEP-1%'")) == {ids[10], ids[11]}
    assert set(found(f"attributes.run_id IN ('{ids[1]}', '{ids[7]}')")) == {ids[1], ids[7]}
    assert found("tags.absent IS NULL", order_by=["attributes.run_name DESC"], max_results=2) == [ids[11], ids[10]]
    assert found("params.lr IS NOT NULL", order_by=["params.lr ASC", "metrics.f1 DESC"])[:3] == [ids[11], ids[7], ids[3]]
    # Pages through MlflowClient.search_runs and its page token.
    seen, token = [], None
    while True:
        page = CLIENT.search_runs([experiment], order_by=["metrics.f1 DESC"], max_results=5, page_token=token)
        seen += [run.info.run_id for run in page]
        token = page.token
        if not token:
            break
    assert seen == [ids[i] for i in reversed(range(12))], "pages cover every run once, in order"
    # Deleted runs leave the default view and come back on restore.
    CLIENT.delete_run(ids[0])
    assert ids[0] not in found()
    assert found(run_view_type=ViewType.DELETED_ONLY) == [ids[0]]
    assert error_code(lambda: CLIENT.log_metric(ids[0], "f1", 1.0)) == "INVALID_PARAMETER_VALUE"
    CLIENT.restore_run(ids[0])
    assert ids[0] in found()


@check
def experiments_lifecycle():
    experiment = CLIENT.create_experiment("suite-experiments", tags={"team": "ops"})
    fetched = CLIENT.get_experiment_by_name("suite-experiments")
    assert fetched.experiment_id == experiment and fetched.tags == {"team": "ops"}
    assert fetched.artifact_location == f"mlflow-artifacts:/{experiment}"
    assert CLIENT.get_experiment("0").name == "Default"
    CLIENT.set_experiment_tag(experiment, "phase", "2")
    CLIENT.rename_experiment(experiment, "suite-experiments-renamed")
    assert CLIENT.get_experiment(experiment).name == "suite-experiments-renamed"
    assert CLIENT.get_experiment_by_name("suite-experiments") is None
    names = [e.name for e in CLIENT.search_experiments(filter_string="name LIKE 'suite-%' and tags.phase = '2'")]
    assert names == ["suite-experiments-renamed"], names
    CLIENT.delete_experiment(experiment)
    assert CLIENT.get_experiment(experiment).lifecycle_stage == "deleted"
    assert "suite-experiments-renamed" not in [e.name for e in CLIENT.search_experiments()]
    assert "suite-experiments-renamed" in [e.name for e in CLIENT.search_experiments(view_type=ViewType.DELETED_ONLY)]
    assert error_code(lambda: CLIENT.create_run(experiment)) == "INVALID_PARAMETER_VALUE"
    CLIENT.restore_experiment(experiment)
    assert CLIENT.get_experiment(experiment).lifecycle_stage == "active"


@check
def errors_carry_mlflow_codes():
    assert error_code(lambda: CLIENT.get_run("0" * 32)) == "RESOURCE_DOES_NOT_EXIST"
    assert error_code(lambda: CLIENT.get_experiment("987654")) == "RESOURCE_DOES_NOT_EXIST"
    assert error_code(lambda: CLIENT.create_experiment("Default")) == "RESOURCE_ALREADY_EXISTS"
    assert error_code(lambda: mlflow.search_runs(experiment_ids=["0"], filter_string="metrics.f1 >> 1", output_format="list")) == "INVALID_PARAMETER_VALUE"
    assert error_code(lambda: mlflow.search_runs(experiment_ids=["0"], filter_string="metrics.f1 > 1 OR metrics.f1 < 0", output_format="list")) == "INVALID_PARAMETER_VALUE"
    assert error_code(lambda: mlflow.search_runs(experiment_ids=["0"], order_by=["metrics.f1 sideways"], output_format="list")) == "INVALID_PARAMETER_VALUE"
    run = CLIENT.create_run("0", run_name="errors")
    run_id = run.info.run_id
    CLIENT.log_param(run_id, "lr", "0.1")
    CLIENT.log_param(run_id, "lr", "0.1")  # the same value again is fine
    assert error_code(lambda: CLIENT.log_param(run_id, "lr", "0.2")) == "INVALID_PARAMETER_VALUE"
    assert CLIENT.get_run(run_id).data.params == {"lr": "0.1"}
    assert error_code(lambda: CLIENT.log_metric(run_id, "bad!name", 1.0)) == "INVALID_PARAMETER_VALUE"
    # The client splits big batches itself; the server's own limit, over raw HTTP:
    response = requests.post(
        os.environ["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/runs/log-batch",
        json={"run_id": run_id, "metrics": [{"key": "m", "value": 1, "timestamp": 0, "step": i} for i in range(1001)]},
    )
    assert response.status_code == 400, response.status_code
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE", response.text
    assert error_code(lambda: CLIENT.delete_tag(run_id, "never-set")) == "RESOURCE_DOES_NOT_EXIST"
    CLIENT.set_tag(run_id, "temporary", "x")
    CLIENT.delete_tag(run_id, "temporary")
    assert "temporary" not in CLIENT.get_run(run_id).data.tags
    assert error_code(lambda: CLIENT.log_metric("f" * 32, "m", 1.0)) == "RESOURCE_DOES_NOT_EXIST"
    CLIENT.set_terminated(run_id, status="KILLED")
    assert CLIENT.get_run(run_id).info.status == "KILLED"


def main():
    import mlflow.version

    pinned = open(os.path.join(os.path.dirname(__file__), "requirements.txt")).read().split("==")[1].strip()
    assert mlflow.version.VERSION == pinned, f"mlflow {mlflow.version.VERSION} is installed, the suite pins {pinned}"
    print(f"mlflow client {mlflow.version.VERSION}")
    for function in CHECKS:
        started = time.time()
        function()
        print(f"ok {function.__name__} ({time.time() - started:.2f} s)")
    print(f"suite: all {len(CHECKS)} checks passed")


if __name__ == "__main__":
    sys.exit(main())
