#!/usr/bin/env bash
# What a step run costs flow's executors beyond the step's own time: a chain of STEPS
# steps, each sleeping SECONDS, run once locally and once on Slurm (`scripts/slurm.sh
# start` first). Each step writes its own start and end time; the store has when flow
# claimed the run (just before it started or submitted it) and when the run ended
# (outputs published). A chain, so that no step waits for a free core: what remains is
# submit -> start, start -> end (the step's own time), end -> published.
#
#   scripts/slurm-overhead.sh [STEPS] [SECONDS]      (default 5 steps of 2 s)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
flow="${FLOW:-$root/target/debug/flow}"
steps="${1:-5}"
seconds="${2:-2}"
export SLURM_CONF="${SLURM_CONF:-${FLOW_SLURM_DIR:-/tmp/flow-slurm}/slurm.conf}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

{
  echo "name: overhead"
  echo "entry_points:"
  for i in $(seq "$steps"); do
    echo "  s$i:"
    [ "$i" -gt 1 ] && echo "    depends_on: [s$((i - 1))]"
    echo "    command: \"date +%s.%N > \$FLOW_OUTPUT_DIR/start; sleep $seconds; date +%s.%N > \$FLOW_OUTPUT_DIR/end\""
  done
} >"$work/MLproject.yaml"
(cd "$work" && git init -q && echo .flow/ >.gitignore && git add -A &&
  git -c user.email=x@y -c user.name=x commit -qm overhead)

for executor in local slurm; do
  store="$work/store-$executor"
  begin=$(date +%s.%N)
  "$flow" --project "$work" --store "$store" run -e "s$steps" --executor "$executor" >/dev/null 2>&1
  end=$(date +%s.%N)
  python3 - "$store" "$executor" "$begin" "$end" "$seconds" <<'EOF'
import sqlite3, sys, os, statistics
store, executor, begin, end, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
db = sqlite3.connect(os.path.join(store, "flow.db"))
rows = db.execute("SELECT run_id, start_time, end_time FROM runs ORDER BY start_time").fetchall()
submit, own, publish = [], [], []
for run_id, claimed, ended in rows:
    out = os.path.join(store, "runs", run_id)
    started = float(open(os.path.join(out, "start")).read())
    finished = float(open(os.path.join(out, "end")).read())
    submit.append(started - claimed / 1e6)
    own.append(finished - started)
    publish.append(ended / 1e6 - finished)
m = statistics.median
total = end - begin
print(f"{executor:<6} {len(rows)} steps of {seconds:g} s: per step median claim->start {m(submit):.2f} s "
      f"(max {max(submit):.2f}), own {m(own):.2f} s, end->published {m(publish):.2f} s "
      f"(max {max(publish):.2f}); wall {total:.1f} s = {total / (len(rows) * seconds):.2f} x the steps' own time")
EOF
done
