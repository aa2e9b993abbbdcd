#!/usr/bin/env bash
# Fuzzes every target in fuzz/fuzz_targets for SECONDS each (default 60), on a temporary
# copy of its checked-in corpus (fuzz/corpus/<target>), so a run never changes the
# corpus. Fails if any target crashes, panics, hangs or runs out of memory, and prints
# where the input that did it was saved (fuzz/artifacts/<target>/, not committed) and
# the input itself in base64, since a CI checkout does not outlive its run.
#
#   ./fuzz/run.sh            # 60 s per target (what .ci/run does)
#   ./fuzz/run.sh 3600       # an hour per target
#   ./fuzz/run.sh 600 sse_framing config   # only these targets
#
# Works on the stable toolchain: cargo-fuzz passes nightly-only `-Z` flags to rustc and
# cargo, which RUSTC_BOOTSTRAP=1 lets stable accept. Address Sanitizer works on stable
# this way (its runtime ships with the standard library), so the default sanitizer is
# kept.
set -euo pipefail

CARGO_FUZZ_VERSION=0.13.2

seconds="${1:-60}"
shift || true
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"

if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
  echo "usage: $0 [SECONDS] [TARGET...]" >&2
  exit 2
fi

if ! cargo fuzz --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

export RUSTC_BOOTSTRAP=1
# Share the workspace's target directory: fuzz builds go to target/<triple>/release
# and do not disturb the workspace's own builds.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
# cargo-fuzz's default: optimized, with debug assertions and overflow checks, and
# Address Sanitizer.
flags=()

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

started=$(date +%s)
cargo fuzz build "${flags[@]}"
echo "fuzz: built ${#targets[@]} targets in $(($(date +%s) - started)) s"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

passed=0
failed=()
for target in "${targets[@]}"; do
  corpus="$work/$target"
  mkdir -p "$corpus" "artifacts/$target"
  if [ -d "corpus/$target" ]; then
    cp -R "corpus/$target/." "$corpus/"
  fi
  marker="$work/.marker-$target"
  touch "$marker"
  echo "fuzz: $target for ${seconds} s"
  # -timeout: an input that takes over 10 s is a hang, reported like a crash.
  if cargo fuzz run "${flags[@]}" "$target" "$corpus" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$work/$target.log" 2>&1; then
    passed=$((passed + 1))
    grep -E '^(stat::number_of_executed_units|stat::new_units_added|Done )' "$work/$target.log" \
      | sed "s/^/fuzz: $target: /" || true
  else
    failed+=("$target")
    echo "fuzz: $target FAILED; its output:" >&2
    tail -n 80 "$work/$target.log" >&2
    while IFS= read -r -d '' crash; do
      echo "fuzz: $target: crashing input saved as $root/fuzz/$crash" >&2
      echo "fuzz: $target: the input in base64 (decode with base64 -d):" >&2
      base64 -w 0 "$crash" >&2
      echo >&2
      echo "fuzz: reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run $target fuzz/$crash" >&2
    done < <(find "artifacts/$target" -type f -newer "$marker" -print0)
  fi
done

echo "fuzz: ${seconds} s per target, $(($(date +%s) - started)) s in all"
echo "fuzz: ${passed} passed, ${#failed[@]} failed"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: failing targets: ${failed[*]}" >&2
  exit 1
fi
