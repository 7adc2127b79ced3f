"""The mlflow client's side of scripts/bench-tracking.sh: the same calls against either
server (MLFLOW_TRACKING_URI). Prints `bench <name> <value> <unit>` lines.

  rates SECONDS          log_batch (1000 metrics per call) and log_metric rates
  client-cost SECONDS    log_batch with the network removed (requests' transport answers at
                         once): what the client itself spends on a call, which bounds any
                         server's rate
  populate N             N finished runs in experiment `search` (param lr=i, metric m=i)
                         through the API
  clone KIND DB N        the one run of `search` cloned in SQL into N runs with lr=i, m=i,
                         in the server's own database (KIND flow or mlflow): every row as
                         that server wrote it for the first run, in seconds instead of the
                         minutes N runs take through the client on a loaded machine
  search N               search_runs latencies over those runs (median of 15 after a warm-up)
  http SECONDS N         the same log_batch body and searches over raw HTTP (one kept-alive
                         connection, no client library): the server's own speed
  client-search N        the client's own cost of each search: its answer fetched once from
                         the server, then search_runs timed with requests' transport
                         answering that at once (what any server's latency adds to)
"""

import statistics
import sys
import time

from mlflow.entities import Metric, Param


def rates(seconds):
    from mlflow import MlflowClient

    client = MlflowClient()
    experiment = client.create_experiment(f"rates-{time.time()}")
    run_id = client.create_run(experiment).info.run_id
    logged, started = 0, time.time()
    while time.time() - started < seconds:
        stamp = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric("m", float(i), stamp, logged + i) for i in range(1000)])
        logged += 1000
    print(f"bench log_batch_per_s {logged / (time.time() - started):.0f} metrics/s")
    logged, started = 0, time.time()
    while time.time() - started < seconds:
        client.log_metric(run_id, "single", float(logged), step=logged)
        logged += 1
    print(f"bench log_metric_per_s {logged / (time.time() - started):.0f} metrics/s")
    history = client.get_metric_history(run_id, "m")
    assert len(history) >= 1000, len(history)


def answer_at_once(body):
    """Makes requests' transport answer every call with `body` (HTTP 200, JSON) without a
    network or a server, leaving the rest of the client's path as it is."""
    import requests
    from requests.adapters import HTTPAdapter

    def send(self, request, **kwargs):
        response = requests.Response()
        response.status_code = 200
        response._content = body
        response.headers["Content-Type"] = "application/json"
        response.url = request.url
        response.request = request
        return response

    HTTPAdapter.send = send


def client_cost(seconds):
    from mlflow import MlflowClient

    answer_at_once(b"{}")
    client = MlflowClient()
    run_id = "0" * 32
    logged, started = 0, time.time()
    while time.time() - started < seconds:
        stamp = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric("m", float(i), stamp, logged + i) for i in range(1000)])
        logged += 1000
    print(f"bench client_only_log_batch_per_s {logged / (time.time() - started):.0f} metrics/s")


def populate(count):
    from mlflow import MlflowClient

    client = MlflowClient()
    experiment = client.create_experiment("search")
    started = time.time()
    for i in range(count):
        run_id = client.create_run(experiment).info.run_id
        client.log_batch(run_id, metrics=[Metric("m", float(i), 0, 0)], params=[Param("lr", str(i))])
        client.set_terminated(run_id)
    print(f"# populated {count} runs through the API in {time.time() - started:.0f} s")


def clone(kind, db_path, count):
    import sqlite3

    con = sqlite3.connect(db_path, timeout=60)
    new_id = "printf('%032x', n.i)"
    counter = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"

    def columns(table):
        return [row[1] for row in con.execute(f"PRAGMA table_info({table})")]

    def copy(table, where, replacements, join="", skip=()):
        names = [c for c in columns(table) if c not in skip]
        select = [replacements.get(c, f"t.{c}") for c in names]
        con.execute(
            f"{counter} INSERT INTO {table} ({', '.join(names)}) "
            f"SELECT {', '.join(select)} FROM {table} t, n {join} WHERE {where}",
            (count - 1, template),
        )

    if kind == "mlflow":
        (template,) = con.execute(
            "SELECT r.run_uuid FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id"
            " WHERE e.name = 'search'"
        ).fetchone()
        copy("runs", "t.run_uuid = ?", {
            "run_uuid": new_id, "name": "'run-' || n.i", "start_time": "t.start_time + n.i",
            "end_time": "t.end_time + n.i",
            "artifact_uri": f"replace(t.artifact_uri, t.run_uuid, {new_id})",
        })
        for table, value in [("params", "CAST(n.i AS TEXT)"), ("metrics", "n.i"), ("latest_metrics", "n.i"),
                             ("tags", "CASE WHEN t.key = 'mlflow.runName' THEN 'run-' || n.i ELSE t.value END")]:
            copy(table, "t.run_uuid = ?", {"run_uuid": new_id, "value": value})
    else:
        (template,) = con.execute(
            "SELECT r.id FROM runs r JOIN experiments e ON e.id = r.experiment_id WHERE e.name = 'search'"
        ).fetchone()
        copy("runs", "t.id = ?", {
            "run_id": new_id, "key_value": "'run-' || n.i", "run_time": "t.run_time + n.i * 1000",
            "start_time": "t.start_time + n.i * 1000", "end_time": "t.end_time + n.i * 1000",
        }, skip=("id",))
        joined = f"JOIN runs r ON r.run_id = {new_id}"
        for table, value in [("logged_params", "CAST(n.i AS TEXT)"), ("metrics", "n.i"), ("latest_metrics", "n.i"),
                             ("tags", "CASE WHEN t.key = 'mlflow.runName' THEN 'run-' || n.i ELSE t.value END")]:
            copy(table, "t.run = ?", {"run": "r.id", "value": value}, join=joined)
    con.commit()
    (runs,) = con.execute("SELECT count(*) FROM runs").fetchone()
    print(f"# {kind}: {runs} runs in its database")


def queries(count):
    """name -> (filter, order_by, expected number of runs)."""
    return {
        "search_one_of_n_ms": (f"params.lr = '{count // 2}'", None, 1),
        "search_100_by_metric_ms": ("metrics.m < 100", ["metrics.m DESC"], 100),
        "search_first_1000_ms": ("", None, min(count, 1000)),
    }


def search_experiment():
    from mlflow import MlflowClient

    return MlflowClient().get_experiment_by_name("search").experiment_id


def search(count):
    import mlflow

    experiment = search_experiment()
    for name, (filter_string, order_by, expected) in queries(count).items():
        times = []
        for _ in range(16):
            started = time.time()
            found = mlflow.search_runs(
                experiment_ids=[experiment], filter_string=filter_string, order_by=order_by,
                max_results=1000, output_format="list",
            )
            times.append((time.time() - started) * 1000)
            assert len(found) == expected, (name, len(found))
        print(f"bench {name} {statistics.median(times[1:]):.1f} ms")


def http(seconds, count):
    import json
    import os

    import requests

    from mlflow import MlflowClient

    base = os.environ["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow"
    session = requests.Session()
    client = MlflowClient()
    run_id = client.create_run(client.create_experiment(f"http-{time.time()}")).info.run_id
    logged, started = 0, time.time()
    while time.time() - started < seconds:
        body = json.dumps({"run_id": run_id, "metrics": [
            {"key": "m", "value": float(i), "timestamp": 1_700_000_000_000, "step": logged + i} for i in range(1000)
        ]})
        response = session.post(base + "/runs/log-batch", data=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 200, response.text
        logged += 1000
    print(f"bench http_log_batch_per_s {logged / (time.time() - started):.0f} metrics/s")
    experiment = search_experiment()
    for name, (filter_string, order_by, expected) in queries(count).items():
        body = json.dumps({"experiment_ids": [experiment], "filter": filter_string,
                           "order_by": order_by or [], "max_results": 1000})
        times = []
        for _ in range(16):
            started = time.time()
            response = session.post(base + "/runs/search", data=body, headers={"Content-Type": "application/json"})
            response.content
            times.append((time.time() - started) * 1000)
            assert response.status_code == 200 and len(response.json().get("runs", [])) == expected, name
        print(f"bench http_{name} {statistics.median(times[1:]):.1f} ms")


def client_search(count):
    import os

    import mlflow
    import requests

    experiment = search_experiment()
    url = os.environ["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/runs/search"
    answers = {}
    for name, (filter_string, order_by, expected) in queries(count).items():
        answers[name] = requests.post(url, json={
            "experiment_ids": [experiment], "filter": filter_string, "order_by": order_by or [],
            "max_results": 1000,
        }).content
    for name, (filter_string, order_by, expected) in queries(count).items():
        answer_at_once(answers[name])
        times = []
        for _ in range(16):
            started = time.time()
            found = mlflow.search_runs(experiment_ids=[experiment], filter_string=filter_string,
                                       order_by=order_by, max_results=1000, output_format="list")
            times.append((time.time() - started) * 1000)
            assert len(found) == expected, (name, len(found))
        print(f"bench client_only_{name} {statistics.median(times[1:]):.1f} ms")


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "rates":
        rates(float(args[0]))
    elif mode == "client-cost":
        client_cost(float(args[0]))
    elif mode == "populate":
        populate(int(args[0]))
    elif mode == "clone":
        clone(args[0], args[1], int(args[2]))
    elif mode == "search":
        search(int(args[0]))
    elif mode == "http":
        http(float(args[0]), int(args[1]))
    elif mode == "client-search":
        client_search(int(args[0]))
    else:
        sys.exit(f"unknown mode {mode}")
