# Two commands for a fresh Debian 12 machine:
#   make run    install what is missing, build, start `mxward serve` on embedded defaults
#   make test   install what is missing, build with warnings as errors, run every test
# Also: make test-asan (ASan+UBSan build and tests), make test-tsan (ThreadSanitizer, threaded
# tests), make package (the .deb), make bench, make fuzz, make format, make clean.

JOBS  ?= $(shell nproc)
CMAKE ?= cmake
CTEST ?= ctest

.PHONY: run test test-asan test-tsan build package bench fuzz format clean deps-run deps-test

deps-run:
	@packaging/install-deps.sh run

deps-test:
	@packaging/install-deps.sh test

build/release/CMakeCache.txt:
	$(CMAKE) -S . -B build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps-run build/release/CMakeCache.txt
	$(CMAKE) --build build/release -j $(JOBS) --target mxward

run: build
	@mkdir -p var
	./build/release/mxward serve --db var/mxward.db --rules rules.d

test: deps-test
	$(CMAKE) -S . -B build/test -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMXWARD_WERROR=ON -DMXWARD_LINE_TABLES_ONLY=ON
	$(CMAKE) --build build/test -j $(JOBS)
	cd build/test && $(CTEST) --output-on-failure -j $(JOBS) --timeout 600

# Built with clang. g++ 12 also instruments UBSan's own per-check data as ASan globals: its
# `mxward` registers 993,133 globals at start (clang's: 107,766) and, as a PIE, applies 4.7 million
# relocations (CMakeLists.txt links sanitized executables -no-pie); `mxward --version` costs 0.79
# CPU seconds with g++, 0.27 with clang, `mxward check` 1.18 and 0.55, and the tests start it
# thousands of times. clang also compiles this build's files in 50-62% of g++'s CPU time
# (parser_pack.cpp 13.1 -> 8.1 s, playbook_engine.cpp 26.9 -> 13.2 s). g++'s warnings stay
# enforced by `make test`.
test-asan: deps-test
	CC=clang CXX=clang++ $(CMAKE) -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DMXWARD_WERROR=ON -DMXWARD_SANITIZE=ON -DMXWARD_LINE_TABLES_ONLY=ON
	$(CMAKE) --build build/asan -j $(JOBS)
	cd build/asan && $(CTEST) --output-on-failure -j $(JOBS) --timeout 900 -LE nosan

# ThreadSanitizer on the threaded tests (tests/CMakeLists.txt: MXWARD_THREAD_TESTS; the only tests
# of that build) and the daemon they start. halt_on_error: the first race fails its test.
# tests/tsan.supp: reports from uninstrumented Debian libraries, each with its reason.
# Built with clang: every production file goes through it for `mxward`, so its -Wthread-safety
# proves the lock annotations here (include/mxward/thread_annotations.h; g++ ignores them), and
# no other build has to compile the daemon with clang just for that.
test-tsan: deps-test
	CC=clang CXX=clang++ $(CMAKE) -S . -B build/tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMXWARD_WERROR=ON -DMXWARD_TSAN=ON -DMXWARD_LINE_TABLES_ONLY=ON
	$(CMAKE) --build build/tsan -j $(JOBS) --target mxward_thread_tests
	cd build/tsan && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$(CURDIR)/tests/tsan.supp" \
	  $(CTEST) --output-on-failure -j $(JOBS) --timeout 900 -LE nosan

# The Debian package, build/package/mxward_<version>-1_<arch>.deb (docs/operations.md): the daemon
# alone, no tests or benchmarks (MXWARD_TESTS=OFF, MXWARD_BENCH=OFF; a few minutes instead of the
# whole tree), compiled with Debian's hardening flags (MXWARD_HARDENING: fortify, stack
# protector, relro, bindnow, from dpkg-buildflags; PIE is gcc's default). The build prints its
# progress; cpack then only installs and packs what was built.
package: deps-run
	@command -v dpkg-buildflags >/dev/null || { echo "make package: dpkg-buildflags is missing (apt-get install dpkg-dev)" >&2; exit 1; }
	$(CMAKE) -S . -B build/package -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMXWARD_TESTS=OFF \
	  -DMXWARD_BENCH=OFF -DMXWARD_HARDENING=ON
	$(CMAKE) --build build/package -j $(JOBS) --target mxward
	cd build/package && cpack -G DEB
	@ls -l build/package/mxward_*.deb

bench: deps-test
	$(CMAKE) -S . -B build/release -DCMAKE_BUILD_TYPE=Release
	$(CMAKE) --build build/release -j $(JOBS)
	bench/run.sh build/release

# libFuzzer (clang, ASan+UBSan) on every tests/fuzz target for FUZZ_SECONDS each; the corpora are
# also replayed by every ctest run. Longer: make fuzz FUZZ_SECONDS=3600.
FUZZ_SECONDS ?= 60
fuzz: deps-test
	tests/fuzz/run.sh $(FUZZ_SECONDS) build/fuzz

format:
	clang-format -i $$(git ls-files '*.h' '*.cpp')

clean:
	rm -rf build
