#!/bin/bash
# Runs every libFuzzer target (tests/fuzz/<name>_fuzz.cpp) for a fixed budget.
#
#   tests/fuzz/run.sh [SECONDS_PER_TARGET] [BUILD_DIR] [TARGET...]
#
# Defaults: 60 seconds per target, build/fuzz, every target. Builds with clang and
# -DMXWARD_FUZZ=ON (libFuzzer + ASan + UBSan; Debian 12: clang and libclang-rt-14-dev, installed by
# packaging/install-deps.sh test), then runs each target on a scratch copy of its seed corpus
# (tests/fuzz/corpus/<name>/, replayed by ctest in the normal build), so the checked-in seeds are
# never modified. A crash, leak, timeout (10 s per input) or out-of-memory (2 GiB) fails the run
# and leaves the input in BUILD_DIR/fuzz-artifacts/; minimise it and add it to the seed corpus.
# Longer on demand: tests/fuzz/run.sh 3600.
set -euo pipefail

budget=${1:-60}
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${2:-$src/build/fuzz}
shift $(( $# > 2 ? 2 : $# ))

if ! command -v clang++ >/dev/null; then
  echo "run.sh: clang++ not found (packaging/install-deps.sh test installs it)" >&2
  exit 1
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in "$src"/tests/fuzz/*_fuzz.cpp; do targets+=("$(basename "$f" .cpp)"); done
fi

start=$(date +%s)
CC=clang CXX=clang++ cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMXWARD_FUZZ=ON -DMXWARD_LINE_TABLES_ONLY=ON >/dev/null
# The targets only (they link mxward_engine): the clang pass over every production file, whose
# -Werror=thread-safety checks the lock annotations, is `make test-tsan`'s build.
cmake --build "$build" -j "$(nproc)" --target "${targets[@]}"
built=$(date +%s)
echo "run.sh: built ${#targets[@]} targets in $((built - start)) s"

mkdir -p "$build/fuzz-artifacts"
failed=()
for t in "${targets[@]}"; do
  scratch="$build/fuzz-corpus/$t"
  rm -rf "$scratch"
  mkdir -p "$scratch"
  log="$build/fuzz-artifacts/$t.log"
  echo "run.sh: $t for ${budget} s"
  # The scratch directory comes first: libFuzzer writes new inputs there, the seeds stay as they are.
  if ! "$build/tests/$t" "$scratch" "$src/tests/fuzz/corpus/$t" \
      -max_total_time="$budget" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$build/fuzz-artifacts/$t-" >"$log" 2>&1; then
    failed+=("$t")
    tail -n 40 "$log" >&2
  fi
  grep -E "stat::number_of_executed_units|cov:" "$log" | tail -n 2 || true
done
echo "run.sh: build $((built - start)) s, fuzzing $(( $(date +%s) - built )) s"
if [ ${#failed[@]} -ne 0 ]; then
  echo "run.sh: FAILED: ${failed[*]} (inputs in $build/fuzz-artifacts/)" >&2
  exit 1
fi
echo "run.sh: all ${#targets[@]} targets ran ${budget} s without a finding"
