# keel build. `make verify` (model checks and the invariant report) and
# `make test` (unit and property tests) are the README's two commands; both work
# on a fresh machine because every target first runs `make deps`.

CXX       ?= g++
CXXSTD    := -std=c++20
WARN      := -Wall -Wextra -Werror
OPT       ?= -O2 -g
PREFIX    ?= /usr/local
JOBS      ?= $(shell nproc 2>/dev/null || echo 2)

# One build tree per compiler, so g++ and clang builds can coexist.
TC        := $(notdir $(firstword $(CXX)))
BUILD     ?= build/$(TC)
CLANG     := clang++-14
ifneq (,$(findstring clang,$(TC)))
WARN      += -Wthread-safety
endif

INCLUDES  := -Ikernel/include
CPPFLAGS  += $(INCLUDES) -MMD -MP
CXXFLAGS  += $(CXXSTD) $(WARN) $(OPT) -pthread
LDLIBS    += -pthread

LIB_SRC   := $(sort $(wildcard kernel/src/*/*.cpp))
LIB_OBJ   := $(LIB_SRC:%.cpp=$(BUILD)/%.o)
LIB       := $(BUILD)/libkeel.a

# tests/main.cpp: keel::bootstrap first (workers are fresh images of this binary).
TEST_SRC  := tests/main.cpp $(sort $(wildcard tests/*/*.cpp))
TEST_OBJ  := $(TEST_SRC:%.cpp=$(BUILD)/%.o)
TEST_BIN  := $(BUILD)/keel_tests
TEST_LIBS := -lgtest -lrapidcheck

BENCH_SRC := $(sort $(wildcard bench/*.cpp))
BENCH_BIN := $(BENCH_SRC:bench/%.cpp=$(BUILD)/bench/%)
# Recursively expanded: pkg-config runs after `make deps` installed Abseil.
BENCH_LIBS = -lbenchmark $(shell pkg-config --libs absl_synchronization 2>/dev/null) -ltbb

EXAMPLE_SRC := $(sort $(wildcard examples/*.cpp))
EXAMPLE_BIN := $(EXAMPLE_SRC:examples/%.cpp=$(BUILD)/examples/%)

DEPS_STAMP := build/.deps-ok

.PHONY: all deps lib test verify sanitize asan tsan bench install format lint check-shim examples clean

all: lib examples

# `make deps` always checks (it is cheap and quiet); the stamp lets object files
# depend on it without rebuilding when nothing changed.
deps:
	@tools/deps.sh
	@mkdir -p build && [ -f $(DEPS_STAMP) ] || touch $(DEPS_STAMP)

$(DEPS_STAMP):
	@tools/deps.sh
	@mkdir -p build && touch $@

# The shim boundary is part of the build: kernel code that reaches the OS
# directly fails it (PLAT-1).
check-shim:
	@tools/check_shim.sh

lib: deps check-shim $(LIB)

$(LIB): $(LIB_OBJ)
	@mkdir -p $(@D)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/%.o: %.cpp | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -c $< -o $@

$(BUILD)/tests/%.o: CPPFLAGS += -DKEEL_SOURCE_DIR='"$(CURDIR)"'

$(TEST_BIN): $(TEST_OBJ) $(LIB)
	$(CXX) $(CXXFLAGS) $(LDFLAGS) $(TEST_OBJ) $(LIB) $(TEST_LIBS) $(LDLIBS) -o $@

test: deps check-shim $(TEST_BIN)
	$(TEST_BIN) --gtest_brief=1 $(TEST_ARGS)

examples: $(EXAMPLE_BIN)

$(BUILD)/examples/%: examples/%.cpp $(LIB) | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) $< $(LIB) $(LDLIBS) -o $@

# Model checks, Spin proofs, twins and the invariant report.
verify: deps check-shim
	python3 tools/verify.py --jobs $(JOBS)

# The whole test suite under ASan+UBSan, then separately under TSan (clang 14).
sanitize: asan tsan

asan: deps
	$(MAKE) --no-print-directory test CXX=$(CLANG) BUILD=build/asan \
	  OPT="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all" \
	  LDFLAGS="-fsanitize=address,undefined" TEST_ARGS="$(TEST_ARGS)"

# atexit_sleep_ms=0: TSan otherwise sleeps a second in every exiting process,
# and the process tests start and stop hundreds of workers.
tsan: deps
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 atexit_sleep_ms=0" \
	$(MAKE) --no-print-directory test CXX=$(CLANG) BUILD=build/tsan \
	  OPT="-O1 -g -fsanitize=thread" LDFLAGS="-fsanitize=thread" TEST_ARGS="$(TEST_ARGS)"

$(BUILD)/bench/%: bench/%.cpp $(LIB) | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CXX) $(CPPFLAGS) $(CXXSTD) $(WARN) -O2 -g -pthread $< $(LIB) $(BENCH_LIBS) $(LDLIBS) -o $@

bench: deps $(BENCH_BIN)
	@for b in $(BENCH_BIN); do echo "== $$b"; $$b $(BENCH_ARGS) || exit 1; done

install: lib
	tools/install.sh "$(PREFIX)" "$(LIB)"

format: deps
	clang-format-14 -i $$(git ls-files '*.hpp' '*.cpp' '*.h')

lint: deps
	clang-format-14 --dry-run -Werror $$(git ls-files '*.hpp' '*.cpp' '*.h')
	tools/lint.sh

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(BENCH_BIN:=.d) $(EXAMPLE_BIN:=.d)
