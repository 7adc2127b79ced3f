#!/usr/bin/env bash
# The test command (README, and all that .ci/run does): on a fresh Debian/Ubuntu machine,
# as root, it installs what is missing, starts the single-node Slurm cluster unless one
# answers, runs every test of the workspace, fuzzes each input target for FUZZ_SECONDS
# (default 60), and stops the cluster it started — also when a step fails.
#
#   scripts/test.sh                    everything
#   FUZZ_SECONDS=0 scripts/test.sh     the tests without the fuzzing
set -euo pipefail
cd "$(dirname "$0")/.."

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

cargo test --workspace

seconds="${FUZZ_SECONDS:-60}"
if [ "$seconds" != 0 ]; then
  FUZZ_SECONDS="$seconds" bash scripts/fuzz.sh
fi
