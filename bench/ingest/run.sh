#!/bin/bash
# Builds and runs the ingest benchmark (bench/ingest/ingest_bench.cpp) against an mxward build.
#   bench/ingest/run.sh [BUILD_DIR]     (default: build; needs libmxward_engine.a built there)
# Prints lines/s over TCP and TLS (octet-counted; 1 and 8 connections) and UDP (paced at 50,000/s, then unpaced) on loopback.
set -euo pipefail
src="$(cd "$(dirname "$0")/../.." && pwd)"
build="${1:-$src/build}"
out="$build/bench/ingest_bench"
mkdir -p "$build/bench"
if [ -x "$build/bench/mxward_ingest_bench" ] && \
   [ "$build/bench/mxward_ingest_bench" -nt "$build/libmxward_engine.a" ]; then
  out="$build/bench/mxward_ingest_bench"  # built by CMake (-DMXWARD_BENCH=ON)
elif [ ! -x "$out" ] || [ "$src/bench/ingest/ingest_bench.cpp" -nt "$out" ] || \
   [ "$build/libmxward_engine.a" -nt "$out" ]; then
  g++ -std=c++20 -O2 -DNDEBUG -DBOOST_ASIO_NO_DEPRECATED -I"$src/include" -I"$build/generated" \
    -I"$src" -I"$src/tests" "$src/bench/ingest/ingest_bench.cpp" "$build/libmxward_engine.a" \
    -lspdlog -lfmt -lssl -lcrypto -pthread -o "$out"
fi
echo "== TCP octet-counted, 3,000,000 lines, 1 and 8 connections"
"$out" tcp 3000000 1
"$out" tcp 3000000 8
echo "== TLS (RFC 5425, client certificates), 3,000,000 lines, 1 and 8 connections"
"$out" tls 3000000 1
"$out" tls 3000000 8
echo "== UDP paced at 50,000 lines/s for 10 s"
"$out" udp 50000 10
echo "== UDP paced at 200,000 lines/s for 5 s"
"$out" udp 200000 5 || true
