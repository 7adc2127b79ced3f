#!/usr/bin/env bash
# Everything a fresh machine needs besides the Rust toolchain (rustup, stable).
# Idempotent: installs only what is missing.
set -euo pipefail
missing=()
command -v cc >/dev/null || missing+=(gcc)
command -v git >/dev/null || missing+=(git)
command -v make >/dev/null || missing+=(make)
# scripts/fuzz.sh: libFuzzer is C++.
command -v c++ >/dev/null || missing+=(g++)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q "${missing[@]}"
fi
# --- slurm: Debian's slurm-wlm and munge for tests/slurm.rs (scripts/slurm.sh starts the cluster) ---
bash "$(dirname "$0")/slurm.sh" install
# --- end slurm ---
# --- postgresql: Debian's postgresql for the store's PostgreSQL backend (scripts/postgres.sh) ---
bash "$(dirname "$0")/postgres.sh" install
# --- end postgresql ---
command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup" >&2; exit 1; }

# --- flow server's client suite (tests/tracking.rs): the real `mlflow` client, pinned in
# tests/tracking/requirements.txt, in a venv outside the repository. FLOW_TEST_VENV moves it.
venv=${FLOW_TEST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/flow-test-venv}
requirements="$(dirname "$0")/../tests/tracking/requirements.txt"
pinned=$(sed -n 's/^mlflow-skinny==//p' "$requirements")
if ! "$venv/bin/python" -c "import mlflow.version, sys; sys.exit(mlflow.version.VERSION != '$pinned')" 2>/dev/null; then
  if ! python3 -c "import venv, ensurepip" 2>/dev/null; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q python3 python3-venv
  fi
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
fi
# --- end of flow server's block
# --- browser tests (tests/ui_browser.rs): Debian's Chromium, driven over the DevTools pipe.
# Tests never download a browser of their own; they fail (never skip) without this one.
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
fi
# --- end browser tests
