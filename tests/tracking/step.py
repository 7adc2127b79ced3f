"""A flow step that logs through the mlflow client into its own run.

The step's command sets MLFLOW_RUN_ID to FLOW_RUN_ID (as the runner will itself when a
tracking server is configured); MLFLOW_TRACKING_URI points at `flow server`. Exits with
the status given as the first argument, after the client has ended the run FINISHED.
"""

import os
import sys

import mlflow
from mlflow import MlflowClient

exit_status = int(sys.argv[1])
flow_run = os.environ["FLOW_RUN_ID"]
with mlflow.start_run() as run:
    assert run.info.run_id == flow_run, (run.info.run_id, flow_run)
    mlflow.log_param("hidden", 64)
    for epoch in range(3):
        mlflow.log_metric("val_loss", 1.0 / (epoch + 1), step=epoch)
    mlflow.set_tag("logged_by", "mlflow")
    with open(os.path.join(os.environ["FLOW_OUTPUT_DIR"], "model.txt"), "w") as handle:
        handle.write("weights\n")
# The client sent FINISHED on leaving the block; the runner owns the status until the step ends.
status = MlflowClient().get_run(flow_run).info.status
print(f"status after end_run: {status}")
assert status == "RUNNING", status
sys.exit(exit_status)
