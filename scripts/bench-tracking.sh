#!/usr/bin/env bash
# `flow server` beside `mlflow server` (full mlflow, SQLite backend, 1 worker, as
# ../shared/bench/anchor-mlflow-server.sh runs it), both driven by the same mlflow client
# (the venv scripts/setup.sh creates) in the same run: log_batch and log_metric rates, the
# client's own cost of a log_batch (its bound on any server), search_runs over RUNS_N runs,
# and each server's RSS. Prints `bench <server>.<name> <value> <unit>` lines, then ratios.
#
# Usage: scripts/bench-tracking.sh
#   FLOW_BIN          the flow binary (default target/release/flow; build it first)
#   RUNS_N            runs searched (default 10000)
#   RATE_SECONDS      seconds per rate measurement (default 5)
#   ANCHORS           where the full mlflow's venv lives (default ~/.cache/flow-anchors)
#   BACKEND           sqlite (default) or postgres: both servers keep their tables in
#                     PostgreSQL (the server at FLOW_BENCH_POSTGRES, default
#                     scripts/postgres.sh's), each in a fresh database; the runs searched
#                     are then logged through the API (RUNS_N default 500), not cloned in SQL
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
FLOW_BIN=${FLOW_BIN:-$repo/target/release/flow}
BACKEND=${BACKEND:-sqlite}
if [ "$BACKEND" = postgres ]; then RUNS_N=${RUNS_N:-500}; else RUNS_N=${RUNS_N:-10000}; fi
RATE_SECONDS=${RATE_SECONDS:-5}
ANCHORS=${ANCHORS:-${XDG_CACHE_HOME:-$HOME/.cache}/flow-anchors}
client=${FLOW_TEST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/flow-test-venv}/bin/python
pinned=$(sed -n 's/^mlflow-skinny==//p' "$repo/tests/tracking/requirements.txt")
server_venv=$ANCHORS/venv-server
driver=$repo/scripts/bench_tracking.py
[ -x "$FLOW_BIN" ] || { echo "no flow binary at $FLOW_BIN: cargo build --release" >&2; exit 1; }
[ -x "$client" ] || { echo "no client venv: run scripts/setup.sh" >&2; exit 1; }
[ -x "$server_venv/bin/python" ] || python3 -m venv "$server_venv"
"$server_venv/bin/python" -c 'import mlflow.server' 2>/dev/null \
  || "$server_venv/bin/pip" install -q "mlflow==$pinned"
if [ "$BACKEND" = postgres ]; then
  "$server_venv/bin/python" -c 'import psycopg2' 2>/dev/null \
    || "$server_venv/bin/pip" install -q psycopg2-binary
fi

W=$(mktemp -d)
flow_port=$((20000 + RANDOM % 20000)); mlflow_port=$((flow_port + 1))
flow_store=$W/flow mlflow_store=sqlite:///$W/mlflow.db
if [ "$BACKEND" = postgres ]; then
  pg=${FLOW_BENCH_POSTGRES:-$(bash "$repo/scripts/postgres.sh" url)}
  for db in flow_bench_tracking mlflow_bench_tracking; do
    psql -q "$pg" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
  done
  flow_store=${pg%/*}/flow_bench_tracking
  mlflow_store=postgresql+psycopg2://${pg#*://}
  mlflow_store=${mlflow_store%/*}/mlflow_bench_tracking
fi
setsid "$server_venv/bin/mlflow" server --backend-store-uri "$mlflow_store" \
  --default-artifact-root "$W/mlflow-artifacts" --host 127.0.0.1 --port $mlflow_port --workers 1 \
  > "$W/mlflow.log" 2>&1 & mlflow_sid=$!
setsid "$FLOW_BIN" --store "$flow_store" --artifacts "$W/flow" server --port $flow_port > "$W/flow.log" 2>&1 & flow_sid=$!
# setsid makes each server a session leader: the session ids are their pids, and every
# process of a server (mlflow's workers) is found and ended through its session.
trap 'kill -- -$mlflow_sid -$flow_sid 2>/dev/null; sleep 1; rm -rf "$W"' EXIT
for port in $flow_port $mlflow_port; do
  for _ in $(seq 240); do curl -sf "127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.5; done
done
echo "# mlflow client $pinned; mlflow server $("$server_venv/bin/mlflow" --version | awk '{print $3}') (1 worker); both on $BACKEND; flow $("$FLOW_BIN" --version | awk '{print $2}')"
echo "# load before: $(uptime | sed 's/.*load average: //')"

run() { # server port mode args...
  local name=$1 port=$2; shift 2
  MLFLOW_TRACKING_URI=http://127.0.0.1:$port MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true \
    "$client" "$driver" "$@" | grep -E '^(bench|#)' | sed "s/^bench /bench $name./"
}
rss() { ps -o rss= -s "$1" | awk '{s += $1} END {printf "%.0f", s / 1024}'; }

out=$W/figures
{
  MLFLOW_TRACKING_URI=http://127.0.0.1:9 MLFLOW_DISABLE_TELEMETRY=true "$client" "$driver" client-cost "$RATE_SECONDS" | sed 's/^bench /bench client./'
  run flow $flow_port rates "$RATE_SECONDS"
  run mlflow $mlflow_port rates "$RATE_SECONDS"
  if [ "$BACKEND" = postgres ]; then
    run flow $flow_port populate "$RUNS_N"
    run mlflow $mlflow_port populate "$RUNS_N"
  else
    # One run each through the API, then cloned in each server's own database.
    run flow $flow_port populate 1
    run mlflow $mlflow_port populate 1
    "$client" "$driver" clone flow "$W/flow/flow.db" "$RUNS_N"
    "$client" "$driver" clone mlflow "$W/mlflow.db" "$RUNS_N"
  fi
  run flow $flow_port search "$RUNS_N"
  run mlflow $mlflow_port search "$RUNS_N"
  run client $flow_port client-search "$RUNS_N"
  run flow $flow_port http "$RATE_SECONDS" "$RUNS_N"
  run mlflow $mlflow_port http "$RATE_SECONDS" "$RUNS_N"
  echo "bench flow.server_rss_mb $(rss $flow_sid) MB"
  echo "bench mlflow.server_rss_mb $(rss $mlflow_sid) MB"
} | tee "$out"
echo "# load after: $(uptime | sed 's/.*load average: //')"
value() { awk -v k="bench $1" '$1 " " $2 == k {print $3}' "$out"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", a / b}'; }
echo "ratio log_batch flow/mlflow $(ratio "$(value flow.log_batch_per_s)" "$(value mlflow.log_batch_per_s)")x"
echo "ratio log_batch flow/client_only $(ratio "$(value flow.log_batch_per_s)" "$(value client.client_only_log_batch_per_s)")"
echo "ratio log_metric flow/mlflow $(ratio "$(value flow.log_metric_per_s)" "$(value mlflow.log_metric_per_s)")x"
echo "ratio http_log_batch flow/mlflow $(ratio "$(value flow.http_log_batch_per_s)" "$(value mlflow.http_log_batch_per_s)")x"
for query in search_one_of_n_ms search_100_by_metric_ms search_first_1000_ms; do
  echo "ratio $query mlflow/flow $(ratio "$(value mlflow.$query)" "$(value flow.$query)")x" \
    "(client alone $(value client.client_only_$query) ms; over raw HTTP" \
    "$(ratio "$(value mlflow.http_$query)" "$(value flow.http_$query)")x)"
done
echo "ratio rss mlflow/flow $(ratio "$(value mlflow.server_rss_mb)" "$(value flow.server_rss_mb)")x"
