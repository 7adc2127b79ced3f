#!/usr/bin/env bash
# Everything a fresh machine needs besides the Rust toolchain (rustup, stable).
# Idempotent: installs only what is missing.
set -euo pipefail
missing=()
command -v cc >/dev/null || missing+=(gcc)
command -v git >/dev/null || missing+=(git)
command -v make >/dev/null || missing+=(make)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q "${missing[@]}"
fi
# --- slurm: Debian's slurm-wlm and munge for tests/slurm.rs (scripts/slurm.sh starts the cluster) ---
bash "$(dirname "$0")/slurm.sh" install
# --- end slurm ---
command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup" >&2; exit 1; }
