# Thin wrapper: install what is missing, configure and build with CMake, run or test.
# `make run` and `make test` are the two commands of the README.

BUILD      ?= build
BUILD_ASAN ?= build-asan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
ARGS       ?=

# Debian packages the build, the tests and the tools need (see README "Dependencies"). nodejs and npm (for the
# NestJS interop test) are installed from Debian only when no npm is on the PATH already.
DEB_PACKAGES = gcc make cmake pkg-config libh2o-evloop-dev libssl-dev librdkafka-dev libluajit2-5.1-dev luajit2 \
               lua-cjson lua-dkjson lua-busted liblmdb-dev kcat curl python3 wrk \
               clang libclang-rt-14-dev

.PHONY: all deps build build-asan run test test-fast fuzz clean format

all: build

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
	    echo "installing missing Debian packages:$$missing"; \
	    SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) -j$(JOBS)

build-asan: deps
	cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DSY_SANITIZE=ON >/dev/null
	cmake --build $(BUILD_ASAN) -j$(JOBS)

run: build
	./$(BUILD)/switchyard routes.lua $(ARGS)

# Every layer in the normal build, then the C unit and end-to-end tests again under ASan/UBSan.
test: build build-asan
	cd $(BUILD) && ctest --output-on-failure -j2
	cd $(BUILD_ASAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    ctest --output-on-failure -j2 -L 'unit|e2e'

# The normal build only, for a quick edit-test loop.
test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j2

# libFuzzer targets (tests/fuzz; clang and libclang-rt-14-dev): 60 s each, FUZZ_SECONDS=600 for longer.
FUZZ_SECONDS ?= 60
fuzz: deps
	tests/fuzz/run.sh $(FUZZ_SECONDS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) build-fuzz
