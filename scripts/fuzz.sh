#!/usr/bin/env bash
# Builds every fuzz target in fuzz/ and runs each for a bounded time over its committed
# corpus (fuzz/corpus/<target>/, read-only here: new inputs go to a scratch directory).
# A crash, a panic, a run over the time limit or an allocation over the memory limit
# fails the script and leaves the input in fuzz/artifacts/<target>/: fix the code, then
# add the input to the corpus as a regression.
#
#   scripts/fuzz.sh                 every target, FUZZ_SECONDS (default 60) each
#   scripts/fuzz.sh npy smd         only these targets
#   FUZZ_SECONDS=600 scripts/fuzz.sh
#   FUZZ_MERGE=1 scripts/fuzz.sh    also add the inputs that found new coverage to the
#                                   committed corpus (minimised by libFuzzer's -merge)
#
# The build passes cargo-fuzz's own flags (`cargo fuzz build --sanitizer none`, with debug
# assertions and overflow checks) to cargo, so CI needs no cargo-fuzz install; with
# cargo-fuzz installed, `cargo fuzz run <target>` in fuzz/ works on the same crate. No
# sanitizer: they need a nightly compiler, and the targets are safe Rust.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz_dir="$repo/fuzz"
seconds="${FUZZ_SECONDS:-60}"
all_targets=(mlproject params npy telemanom smd csv invocations)
if [ "$#" -gt 0 ]; then targets=("$@"); else targets=("${all_targets[@]}"); fi

triple="$(rustc -vV | sed -n 's/^host: //p')"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$fuzz_dir/target}"
export RUSTFLAGS="-Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 -Cllvm-args=-sanitizer-coverage-stack-depth \
 -Cllvm-args=-simplifycfg-branch-fold-threshold=0 \
 --cfg fuzzing -Cdebug-assertions -Coverflow-checks -Ccodegen-units=1"

build_started=$(date +%s)
# --target keeps the flags off build scripts and proc macros, as cargo-fuzz does.
cargo build --manifest-path "$fuzz_dir/Cargo.toml" --locked --release \
  --config 'profile.release.debug="line-tables-only"' --target "$triple" --bins
echo "fuzz: built ${#all_targets[@]} targets in $(( $(date +%s) - build_started )) s"

# In memory when the machine has /dev/shm: the directory targets write files per input.
scratch="$(mktemp -d -p "$( [ -w /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}")")"
trap 'rm -rf "$scratch"' EXIT
# Targets that read files write them under the temp dir: keep that inside the scratch.
mkdir -p "$scratch/tmp"
export TMPDIR="$scratch/tmp"
failed=()
for target in "${targets[@]}"; do
  binary="$CARGO_TARGET_DIR/$triple/release/$target"
  corpus="$fuzz_dir/corpus/$target"
  artifacts="$fuzz_dir/artifacts/$target"
  mkdir -p "$scratch/$target" "$artifacts"
  # -rss_limit_mb and -malloc_limit_mb make "bounded memory" a checked property:
  # one allocation over 512 MB, or 2 GB resident, is a finding like a panic.
  if ! "$binary" "$scratch/$target" "$corpus" \
      -max_total_time="$seconds" -timeout=10 \
      -rss_limit_mb=2048 -malloc_limit_mb=512 -max_len=65536 \
      -artifact_prefix="$artifacts/" -print_final_stats=1 \
      >"$scratch/$target.log" 2>&1; then
    tail -n 40 "$scratch/$target.log"
    failed+=("$target")
  fi
  if [ "${FUZZ_MERGE:-0}" = 1 ]; then
    "$binary" -merge=1 "$corpus" "$scratch/$target" >>"$scratch/$target.log" 2>&1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$scratch/$target.log" | head -n 1)
  echo "fuzz: $target: ${runs:-?} inputs in ${seconds} s, corpus $(ls "$corpus" | wc -l) files"
  rm -rf "${TMPDIR:?}"/*
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets passed"
