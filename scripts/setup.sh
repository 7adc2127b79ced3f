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
command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup" >&2; exit 1; }

# --- browser tests (tests/ui_browser.rs): Debian's Chromium, driven over the DevTools pipe.
# Tests never download a browser of their own; they fail (never skip) without this one.
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
fi
# --- end browser tests
