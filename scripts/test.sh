#!/usr/bin/env bash
# Runs a test command with what the tests need around it (README's test command and all
# that .ci/run does, as `scripts/test.sh cargo test --workspace`): on a fresh
# Debian/Ubuntu machine, as root, it installs what is missing, starts the single-node
# Slurm cluster unless one answers, runs the given command, fuzzes each input target for
# FUZZ_SECONDS (default 60), and stops the cluster it started — also when a step fails.
#
#   scripts/test.sh cargo test --workspace              everything CI runs
#   scripts/test.sh cargo test --test slurm             one test binary, cluster up
#   FUZZ_SECONDS=0 scripts/test.sh cargo test --workspace   without the fuzzing
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$#" -eq 0 ]; then
  echo "usage: $0 <test command>, e.g. $0 cargo test --workspace" >&2
  exit 2
fi

bash scripts/setup.sh

started_slurm=""
stop_slurm() { if [ -n "$started_slurm" ]; then bash scripts/slurm.sh stop || true; fi; }
trap stop_slurm EXIT
if ! bash scripts/slurm.sh status >/dev/null 2>&1; then
  bash scripts/slurm.sh start
  started_slurm=1
fi
SLURM_CONF="${FLOW_SLURM_DIR:-/tmp/flow-slurm}/slurm.conf"
export SLURM_CONF

"$@"

seconds="${FUZZ_SECONDS:-60}"
if [ "$seconds" != 0 ]; then
  FUZZ_SECONDS="$seconds" bash scripts/fuzz.sh
fi
