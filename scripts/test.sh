#!/usr/bin/env bash
# Runs a test command with what the tests need around it (README's test command and all
# that .ci/run does, as `scripts/test.sh cargo test --workspace`): on a fresh
# Debian/Ubuntu machine, as root, it installs what is missing, starts the single-node
# Slurm cluster unless one answers and a throwaway PostgreSQL (FLOW_TEST_POSTGRES), runs
# the given command, then — when that command is `cargo test …` — the store's and the
# registry's unit tests a second time with their tables in PostgreSQL
# (FLOW_TEST_STORE=postgres), fuzzes each input target for FUZZ_SECONDS (default 60), and
# stops what it started — also when a step fails.
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
started_postgres=""
stop_all() {
  if [ -n "$started_slurm" ]; then bash scripts/slurm.sh stop || true; fi
  if [ -n "$started_postgres" ]; then bash scripts/postgres.sh stop || true; fi
}
trap stop_all EXIT
if ! bash scripts/slurm.sh status >/dev/null 2>&1; then
  bash scripts/slurm.sh start
  started_slurm=1
fi
SLURM_CONF="${FLOW_SLURM_DIR:-/tmp/flow-slurm}/slurm.conf"
export SLURM_CONF
if ! bash scripts/postgres.sh status >/dev/null 2>&1; then
  bash scripts/postgres.sh start
  started_postgres=1
fi
FLOW_TEST_POSTGRES="$(bash scripts/postgres.sh url)"
export FLOW_TEST_POSTGRES

"$@"

if [ "${1:-}" = cargo ] && [ "${2:-}" = test ]; then
  echo "test.sh: the store's and the registry's tests again, on PostgreSQL"
  FLOW_TEST_STORE=postgres cargo test -p flow --lib -- store:: registry::
fi

seconds="${FUZZ_SECONDS:-60}"
if [ "$seconds" != 0 ]; then
  FUZZ_SECONDS="$seconds" bash scripts/fuzz.sh
fi
