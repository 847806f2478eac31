# Sluice: the two commands a new user needs are `make run` and `make test`.
# Everything else here is for developers.

JOBS ?= $(shell nproc)
CMAKE_GEN := -G Ninja
ASAN_FLAGS := -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" -DSANITIZE=address
TSAN_FLAGS := -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" -DSANITIZE=thread
CTEST := ctest -j$(JOBS) --output-on-failure --timeout 300

.PHONY: all setup build run test test-release test-asan test-tsan format clean

all: build

# Installs the Debian packages the build, tests and benchmark need (idempotent).
setup:
	@scripts/setup

build: setup
	@cmake -S . -B build $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build build -j$(JOBS)

# Builds, then runs the main job on its embedded defaults.
run: build
	build/bin/sluice proxy -c examples/front-proxy/envoy.yaml

# Builds and runs every test: the optimised build, then again under ASan+UBSan.
test: test-release test-asan

test-release: build
	cd build && $(CTEST)

# It links the release tree's compiled Envoy API (brought up to date first) when there is a
# release tree (see cmake/EnvoyApi.cmake).
API_FROM = $(if $(wildcard build/build.ninja),$(CURDIR)/build,)
test-asan: setup
	$(if $(API_FROM),@cmake --build build --target sluice_api -j$(JOBS))
	@cmake -S . -B build-asan $(CMAKE_GEN) $(ASAN_FLAGS) -DSLUICE_API_FROM=$(API_FROM) >/dev/null
	@cmake --build build-asan -j$(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $(CTEST)

test-tsan: setup
	@cmake -S . -B build-tsan $(CMAKE_GEN) $(TSAN_FLAGS) >/dev/null
	@cmake --build build-tsan -j$(JOBS)
	cd build-tsan && \
	  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$(CURDIR)/test/tsan.supp \
	  $(CTEST)

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf build build-asan build-tsan
