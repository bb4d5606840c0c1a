# The two commands of the README are `make demo` and `make test`; each
# installs what it needs (Debian packages), configures, builds and runs.
#
#   make demo        build and run the demo
#   make test        format check; Release builds with gcc and clang, warnings
#                    as errors (build-rel-gcc/, build-rel-clang/: what users
#                    and packagers compile); the whole suite twice: a normal
#                    gcc build (build/) and an ASan+UBSan clang build
#                    (build-asan/); the concurrency tests under TSan
#                    (build-tsan/); a short fuzz run
#   make build       just build (build/)
#   make install     cmake --install build (PREFIX=/usr/local)
#   make format      reformat the sources with clang-format
#   make clean

JOBS   ?= $(shell nproc)
PREFIX ?= /usr/local
CTEST  := ctest --output-on-failure -j$(JOBS)

# What building and testing needs on Debian 12.
DEPS := gcc make cmake pkg-config libcmocka-dev clang-format python3 procps iproute2 util-linux \
        python3-zmq libzmq3-dev libnng-dev clang libpcap-dev libsodium-dev tshark \
        scdoc groff-base man-db

SOURCES = $(shell git ls-files '*.c' '*.h' 2>/dev/null || find include src tools tests examples -name '*.[ch]')

.PHONY: all deps build demo test test-release test-normal test-asan test-tsan test-fuzz fuzz bench format format-check install clean

all: build

deps:
	@scripts/deps.sh $(DEPS)

# Warnings are errors in every build made here (FERRY_WERROR); a plain
# `cmake` build, as a user or packager makes it, only warns.
DEV := -DFERRY_WERROR=ON

build/CMakeCache.txt: | deps
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo $(DEV)

build: deps build/CMakeCache.txt
	cmake --build build -j$(JOBS)

# Builds quietly (the build's output is shown only when it fails), then runs.
demo: deps
	@echo "make demo: building..."
	@log=$$(mktemp); \
	if { [ -f build/CMakeCache.txt ] || cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo; } >"$$log" 2>&1 && \
	   cmake --build build -j$(JOBS) >>"$$log" 2>&1; then rm -f "$$log"; \
	else cat "$$log"; rm -f "$$log"; echo "make demo: the build failed" >&2; exit 1; fi
	@./build/ferry_demo

test: deps format-check test-release test-normal test-asan test-tsan test-fuzz
	@echo "make test: all suites passed"

# The ZMTP decoder under libFuzzer: briefly here, longer with `make fuzz`
# (FUZZ_SECONDS, default 600).
FUZZ_SECONDS ?= 600
test-fuzz: deps
	fuzz/run.sh 20

fuzz: deps
	fuzz/run.sh $(FUZZ_SECONDS)

# The full benchmark, with its peers: libzmq and nng are installed here (the
# bench loads them with dlopen; neither the library nor the tool links them).
bench: deps build
	@scripts/deps.sh libzmq3-dev libnng-dev
	./build/ferry bench --json build/bench.json --plot build/bench.svg

test-normal: build
	cd build && $(CTEST)

# Release builds, compiled only: optimisation brings warnings of its own
# (maybe-uninitialized, format checks), and both compilers must pass.
test-release: deps
	CC=gcc cmake -S . -B build-rel-gcc -DCMAKE_BUILD_TYPE=Release $(DEV)
	cmake --build build-rel-gcc -j$(JOBS)
	CC=clang cmake -S . -B build-rel-clang -DCMAKE_BUILD_TYPE=Release $(DEV)
	cmake --build build-rel-clang -j$(JOBS)

# The suite under ASan+UBSan, built with clang (the normal run is gcc's).
test-asan: deps
	CC=clang cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DFERRY_SANITIZE=address,undefined $(DEV)
	cmake --build build-asan -j$(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $(CTEST)

# TSan: the tests labelled "concurrency" (shared-memory synchronisation).
test-tsan: deps
	cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DFERRY_SANITIZE=thread $(DEV)
	cmake --build build-tsan -j$(JOBS)
	cd build-tsan && TSAN_OPTIONS=halt_on_error=1 $(CTEST) -L concurrency

format:
	clang-format -i $(SOURCES)

format-check: deps
	@clang-format --dry-run --Werror $(SOURCES) && echo "format-check: ok"

install: build
	cmake --install build --prefix $(PREFIX)

clean:
	rm -rf build build-asan build-tsan build-fuzz build-rel-gcc build-rel-clang
