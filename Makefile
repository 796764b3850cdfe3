# keel build. `make verify` (model checks and the invariant report) and
# `make test` (unit and property tests) are the README's two commands; both work
# on a fresh machine because every target first runs `make deps`.

CXX       ?= g++
CXXSTD    := -std=c++20
WARN      := -Wall -Wextra -Werror
# -g1 (functions and line tables, what the watchdog's stacks and a crash's
# backtrace need; no variable info): full -g made the test objects three
# times larger and their compile a third slower. OPT='-O2 -g' for a debugger.
OPT       ?= -O2 -g1
PREFIX    ?= /usr/local
JOBS      ?= $(shell nproc 2>/dev/null || echo 2)

# Builds use JOBS cores unless the command line says otherwise (make -jN
# wins): the README's commands and CI are plain `make test`/`make verify`.
ifeq (,$(filter -j%,$(MAKEFLAGS)))
MAKEFLAGS += -j$(JOBS)
endif

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
# The kernel's sources of each directory compile as one translation unit,
# $(BUILD)/kunity/kernel_<dir>.cpp (as the tests' do, below): the standard
# headers they share are parsed once per directory, not once per file,
# which takes half or more off the kernel's compile in every Makefile build
# tree (g++ -O2: 69 s to 27; clang 14 with ASan+UBSan: 91 s to 45; CI builds
# three such trees). Each
# file still compiles on its own where it is checked that it does: in the
# CMake build (make install, CI's install step); clang-tidy reads them a
# directory at a time too (tools/lint.sh).
# KERNEL_UNITY=0 builds one object per file (tools/mutate.py does: a mutant
# then rebuilds its file, not its directory).
KERNEL_UNITY ?= 1
ifeq ($(KERNEL_UNITY),1)
LIB_DIRS  := $(sort $(patsubst kernel/src/%/,%,$(dir $(LIB_SRC))))
LIB_OBJ   := $(LIB_DIRS:%=$(BUILD)/kunity/kernel_%.o)
endif
LIB       := $(BUILD)/libkeel.a

# Fuzz targets: fuzz/<name>.cpp, one KEEL_FUZZ_TARGET each, plus the harness.
FUZZ_TARGETS_ALL := $(sort $(basename $(notdir $(filter-out fuzz/harness.cpp,$(wildcard fuzz/*.cpp)))))
FUZZ_TARGETS ?= $(FUZZ_TARGETS_ALL)
FUZZ_OBJ  := $(FUZZ_TARGETS_ALL:%=$(BUILD)/fuzz/%.o) $(BUILD)/fuzz/harness.o
FUZZ_BIN  := $(FUZZ_TARGETS:%=$(BUILD)/fuzz/bin/%)
FUZZ_STANDALONE := $(FUZZ_TARGETS:%=$(BUILD)/fuzz/standalone/%)
FUZZ_SECONDS ?= 60
FUZZ_SAN  ?= asan
FUZZ_JOBS ?= 1
# Extra flags for the test objects only (the kernel and the examples keep
# OPT; the fuzz targets too, but in the g++ tree: FUZZ_OPT below). -Og: the
# tests are mostly waiting, not computing; at -Og g++ compiles them in half
# the time -O2 takes (the process_pool unit: 52 s to 27 s), and the suite's
# run did not grow (42 s both). The sanitizer
# builds set -O0, see ASAN_VARS and TSAN_VARS. -Og makes g++ 12 report a
# false -Wmaybe-uninitialized inside libstdc++'s own std::stop_source
# constructor (its state is built from a reference to the object being
# constructed), which any default-constructed stop_source inlined into a
# test shows; the kernel's objects, at OPT, keep the warning, and clang's
# -Wuninitialized still checks the test objects in the sanitizer builds.
TEST_OPT  ?= -Og $(if $(findstring clang,$(TC)),,-Wno-maybe-uninitialized)
# The fuzz targets' objects in the g++ tree are test code too: the suite
# replays their corpora and fuzz-standalone reproduces a crash with them,
# and nothing fuzzes with them (libFuzzer builds are clang's). So they take
# TEST_OPT there: the eight (seven targets and the harness) compiled in 31
# CPU-s at -Og against 51 at -O2, one after the other. The clang trees keep
# OPT, which `make fuzz` runs at.
FUZZ_OPT  ?= $(if $(findstring clang,$(TC)),,$(TEST_OPT))
# Coverage instrumentation for libFuzzer, set by the sanitizer builds below:
# the kernel and the targets carry it, so the test binary and the fuzzers of
# one sanitizer build share their objects.
FUZZ_COV  ?=

# tests/main.cpp: keel::bootstrap first (workers are fresh images of this binary).
# The fuzz targets are linked in too: tests/fuzz replays their corpora.
# Test files a build tree leaves out (TSAN_VARS sets it: see there).
TEST_EXCLUDE ?=
TEST_SRC  := tests/main.cpp $(filter-out $(TEST_EXCLUDE),$(sort $(wildcard tests/*/*.cpp)))
TEST_OBJ  := $(TEST_SRC:%.cpp=$(BUILD)/%.o)
# The tests of each directory compile as one translation unit,
# $(BUILD)/unity/tests_<dir>.cpp, which includes them: the shared headers are
# parsed, and GoogleTest's, RapidCheck's and keel's templates instantiated,
# once per directory instead of once per file, which takes about 45% off the
# compile time of every build tree (there are three in CI). Editing one test
# recompiles its directory. UNITY=0 builds one object per file, e.g. to check
# that a test file compiles on its own.
# The biggest directories first (longest compile first: g++ -O2 took 105,
# 58, 52, 47, 45 and 32 s; the others 22 s or less), so that make -j starts
# them first and no long one starts last.
UNITY     ?= 1
ifeq ($(UNITY),1)
TEST_DIRS := $(sort $(patsubst tests/%/,%,$(dir $(wildcard tests/*/*.cpp))))
UNITY_FIRST := process process_pool executor sync hostile future
TEST_DIRS := $(foreach d,$(UNITY_FIRST),$(filter $(d),$(TEST_DIRS))) $(filter-out $(UNITY_FIRST),$(TEST_DIRS))
UNITY_OBJ := $(TEST_DIRS:%=$(BUILD)/unity/tests_%.o)
TEST_OBJ  := $(UNITY_OBJ) $(BUILD)/tests/main.o
endif
TEST_BIN  := $(BUILD)/keel_tests
TEST_LIBS := -lgtest -lrapidcheck

BENCH_SRC := $(sort $(wildcard bench/*.cpp))
BENCH_BIN := $(BENCH_SRC:bench/%.cpp=$(BUILD)/bench/%)
# Recursively expanded: pkg-config runs after `make deps` installed Abseil.
BENCH_LIBS = -lbenchmark $(shell pkg-config --libs absl_synchronization 2>/dev/null) -ltbb

EXAMPLE_SRC := $(sort $(wildcard examples/*.cpp))
EXAMPLE_BIN := $(EXAMPLE_SRC:examples/%.cpp=$(BUILD)/examples/%)

DEPS_STAMP := build/.deps-ok

.PHONY: all deps lib test verify verify-deep verify-design mutate sanitize asan tsan bench bench-plots bench-plots-check install docs format lint check-shim check-shared-state check-docs examples clean \
        fuzz fuzz-build fuzz-run fuzz-smoke fuzz-standalone fuzz-afl

all: lib examples

# `make deps` always checks (it is cheap and quiet); the stamp lets object files
# depend on it without rebuilding when nothing changed.
# Under make -j the installing is the stamp's alone (a second apt-get at
# the same time would fail on dpkg's lock), and everything that needs the
# packages waits for the stamp; a changed package list remakes it first.
deps: $(DEPS_STAMP)
	@tools/deps.sh

$(DEPS_STAMP): tools/deps.sh
	@tools/deps.sh
	@mkdir -p build && touch $@

# The shim boundary is part of the build: kernel code that reaches the OS
# directly fails it (PLAT-1).
check-shim:
	@tools/check_shim.sh

lib: deps check-shim $(LIB) $(MPI_LIB)

$(LIB): $(LIB_OBJ)
	@mkdir -p $(@D)
	@rm -f $@
	ar rcs $@ $^

# Objects depend on the flags they were built with: switching OPT, FUZZ_COV or
# the sanitizer in a build tree rebuilds instead of linking stale objects.
FLAGS_STAMP := $(BUILD)/.flags
FLAGS_NOW := $(CXX) $(CXXFLAGS) $(FUZZ_COV) $(TEST_OPT) $(FUZZ_OPT) $(LDFLAGS)
$(FLAGS_STAMP): FORCE
	@mkdir -p $(@D)
	@printf '%s\n' "$(FLAGS_NOW)" | cmp -s - $@ || printf '%s\n' "$(FLAGS_NOW)" > $@

.PHONY: FORCE
FORCE:

# The fuzz mains are only reached through pattern rules: keep them (an empty
# .SECONDARY would also let make skip objects that are missing).
.SECONDARY: $(BUILD)/fuzz/main/libfuzzer.o $(BUILD)/fuzz/main/standalone.o

$(BUILD)/%.o: %.cpp $(FLAGS_STAMP) | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -c $< -o $@

$(BUILD)/tests/%.o $(BUILD)/unity/%.o: CPPFLAGS += -I. -DKEEL_SOURCE_DIR='"$(CURDIR)"' -DKEEL_TEST_CXX='"$(CXX)"'
$(BUILD)/tests/%.o $(BUILD)/unity/%.o: CXXFLAGS += $(TEST_OPT)

# A unity source changes only when its directory's list of tests does. It is
# written while make reads this file, not by a recipe: as a recipe's target
# (remade every run, to notice a new test file) each unity object waited on
# that job, and make -j then started every kernel and fuzz object before the
# first of them, so the longest compiles began last and ran alone at the end.
# Static pattern rules, so that nothing else under unity/ (the .d files make
# looks for) matches them.
ifeq ($(UNITY),1)
unity_list = printf '\#include "%s"\n' $(filter-out $(TEST_EXCLUDE),$(sort $(wildcard tests/$(1)/*.cpp)))
$(foreach d,$(TEST_DIRS),$(shell mkdir -p $(BUILD)/unity && { $(call unity_list,$(d)) | \
  cmp -s - $(BUILD)/unity/tests_$(d).cpp || $(call unity_list,$(d)) > $(BUILD)/unity/tests_$(d).cpp; }))

$(UNITY_OBJ): $(BUILD)/unity/%.o: $(BUILD)/unity/%.cpp $(FLAGS_STAMP) | $(DEPS_STAMP)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -c $< -o $@

# g++ takes the included test files for headers, and warns when a test
# class derives from a fixture in the file's anonymous namespace (a header's
# such class would differ in every translation unit; these are each compiled
# once). And g++ 12 inlines differently in a big unit and then reports a
# false -Warray-bounds inside libstdc++'s vector<std::thread> growth (a known
# GCC 12 false positive, not in our code; clang still checks array bounds in
# the sanitizer builds). clang has neither warning's problem, and rejects
# the first flag.
ifeq (,$(findstring clang,$(TC)))
$(UNITY_OBJ): CXXFLAGS += -Wno-subobject-linkage -Wno-array-bounds
endif
endif
$(BUILD)/fuzz/%.o: CPPFLAGS += -I.
$(BUILD)/kernel/%.o $(BUILD)/fuzz/%.o: CXXFLAGS += $(FUZZ_COV)
$(BUILD)/fuzz/%.o: CXXFLAGS += $(FUZZ_OPT)

# The kernel's units (KERNEL_UNITY above), written while make reads this
# file, as the tests' are; they carry FUZZ_COV as the kernel's objects do.
ifeq ($(KERNEL_UNITY),1)
kernel_unity_list = printf '\#include "%s"\n' $(filter kernel/src/$(1)/%,$(LIB_SRC))
$(foreach d,$(LIB_DIRS),$(shell mkdir -p $(BUILD)/kunity && { $(call kernel_unity_list,$(d)) | \
  cmp -s - $(BUILD)/kunity/kernel_$(d).cpp || $(call kernel_unity_list,$(d)) > $(BUILD)/kunity/kernel_$(d).cpp; }))

$(LIB_OBJ): $(BUILD)/kunity/%.o: $(BUILD)/kunity/%.cpp $(FLAGS_STAMP) | $(DEPS_STAMP)
	$(CXX) $(CPPFLAGS) -I. $(CXXFLAGS) $(FUZZ_COV) -c $< -o $@
endif

# The shim's own tests link first, so they run first (GoogleTest runs suites
# in the order their objects register them): every layer rests on the shim's
# atomics, futexes and clocks, and a shim that breaks fails its own named
# tests before the layers above it hang or crash on it.
TEST_LINK_OBJ := $(filter $(BUILD)/unity/tests_platform.o $(BUILD)/tests/platform/%,$(TEST_OBJ))
TEST_LINK_OBJ += $(filter-out $(TEST_LINK_OBJ),$(TEST_OBJ))
# -no-pie: the suite starts the test binary itself hundreds of times (every
# process-pool worker, every child role), and a position-independent binary
# has the dynamic loader relocate, and the kernel copy on write, every page
# of pointers first. Under ASan (a 200 MB binary, its globals' metadata all
# pointers) that was a quarter of each start: the process-pool tests took
# 39 CPU-s as PIE and 23 without it; g++ and TSan gain 5-10%. The library is
# compiled as before (position-independent, for the programs that link it).
TEST_LDFLAGS := -no-pie
$(TEST_BIN): $(TEST_OBJ) $(FUZZ_OBJ) $(LIB)
	$(CXX) $(CXXFLAGS) $(LDFLAGS) $(TEST_LDFLAGS) $(TEST_LINK_OBJ) $(FUZZ_OBJ) $(LIB) $(TEST_LIBS) $(LDLIBS) -o $@

# The cluster layer's MPI half (kernel/src/cluster/mpi/): the only objects
# that include <mpi.h>, in a library of their own, so a program without MPI
# links libkeel alone. Open MPI's wrapper gives the flags (its headers as
# system headers: our warnings are not theirs to pass).
MPI_SRC   := $(sort $(wildcard kernel/src/cluster/mpi/*.cpp))
MPI_OBJ   := $(MPI_SRC:%.cpp=$(BUILD)/%.o)
MPI_LIB   := $(BUILD)/libkeel_mpi.a
MPI_CPPFLAGS = $(patsubst -I%,-isystem %,$(shell mpicxx --showme:compile 2>/dev/null))
MPI_LIBS     = $(shell mpicxx --showme:link 2>/dev/null)
# Rank 0's scenarios against real ranks; tests/cluster/mpi_test.cpp runs it
# under mpirun.
MPI_PROG  := $(BUILD)/keel_mpi_scenarios

$(BUILD)/kernel/src/cluster/mpi/%.o: CPPFLAGS += $(MPI_CPPFLAGS)

$(MPI_LIB): $(MPI_OBJ)
	@mkdir -p $(@D)
	@rm -f $@
	ar rcs $@ $^

$(MPI_PROG): $(BUILD)/tests/cluster/mpi/scenarios.o $(MPI_LIB) $(LIB)
	$(CXX) $(CXXFLAGS) $(LDFLAGS) $^ $(MPI_LIBS) $(LDLIBS) -o $@

# The cluster example links the MPI half too (tests/cluster/mpi_test.cpp runs it).
MPI_EXAMPLE := $(BUILD)/examples/cluster
$(MPI_EXAMPLE): examples/cluster.cpp $(MPI_LIB) $(LIB) | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) $< $(MPI_LIB) $(LIB) $(MPI_LIBS) $(LDLIBS) -o $@

# TEST_SHARDS test processes run at once, each every TEST_SHARDS-th test
# (tools/run_tests.sh says why); 1 runs the binary as it is.
TEST_SHARDS ?= 2
# tests/process_pool/starmap_progress_test.cpp runs the progress bar example.
PROGRESS_EXAMPLE := $(BUILD)/examples/progress_bar
test: deps check-shim $(TEST_BIN) $(MPI_PROG) $(MPI_EXAMPLE) $(PROGRESS_EXAMPLE)
	tools/run_tests.sh $(TEST_BIN) $(TEST_SHARDS) --gtest_brief=1 $(TEST_ARGS)

examples: $(EXAMPLE_BIN)

$(BUILD)/examples/%: examples/%.cpp $(LIB) | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) $< $(LIB) $(LDLIBS) -o $@

# Model checks, Spin proofs, twins and the invariant report.
verify: deps check-shim
	python3 tools/verify.py --jobs $(JOBS)

# The models' deep rows (exhaustive context-bounded searches, 3-thread
# variants) and their twins; minutes, not seconds: not in CI. The latest
# run's table is committed as proofs/verify-deep.txt.
verify-deep: deps check-shim
	python3 tools/verify.py --deep --jobs $(JOBS)

# The design models (proofs/design/README.md): Spin checks, with their twins,
# of protocols the kernel does not have yet, checked before they are
# written. About a minute; not part of make verify, whose report covers shipped code.
# The latest run is committed as proofs/design/verify-design.txt.
verify-design: deps
	KEEL_SPIN_SET=design proofs/run_spin.sh

# Mutation testing (README: Mutation score): generic mutants of the kernel
# against the models (and the g++ test binary, when build/g++/keel_tests
# exists), compiled as mutant schemata: one build of each model and of the
# test binary, then one run per mutant. Long, so not part of CI. Knobs:
# MUTATE_SAMPLE=N with MUTATE_SEED, MUTATE_JOBS (mutants run in parallel, and
# make -j of the schema build), MUTATE_FILTER=<regex on file>,
# MUTATE_OPS=<comma list>.
MUTATE_JOBS ?= 1
mutate: deps check-shim
	MUTATE_JOBS=$(MUTATE_JOBS) python3 tools/mutate.py

# The whole test suite under ASan+UBSan, then separately under TSan (clang 14).
# One after the other (under make -j, prerequisites would run at once).
sanitize:
	$(MAKE) --no-print-directory asan
	$(MAKE) --no-print-directory tsan

# The two sanitizer builds; `make fuzz` uses the same trees and objects.
# -gline-tables-only: reports and the watchdog's stacks need functions, files
# and lines, not variables; full -g made these builds (CI's longest steps)
# slower to compile and link.
# -fsanitize-address-use-after-return=never: clang 14 otherwise instruments
# every frame for a fake stack that its runtime leaves off
# (detect_stack_use_after_return=0 by default, and nothing here turns it on),
# which made a test object's compile 1.5x as long for no check that ran.
# TEST_OPT=-O0: the test objects (not the kernel, which keeps -O1) compile
# without optimisation, 2.4x faster; ASan and UBSan check every access and
# operation at -O0 as they do at -O1 (more, with nothing kept in registers).
# CPU-bound tests (properties, stress) run about 2x as long, but the suite
# mostly waits: its run grew by about half a minute, its compile shrank by
# more than two (it was CI's longest).
# -static-libstdc++ for the ASan test binary: UBSan's function check gives
# every function a type_info whose vtable is libstdc++'s, so the binary
# linked against libstdc++.so carried 40,000 dynamic relocations (30,000 of
# them to __function_type_info's vtable) that every start of it, each
# process-pool worker included, resolved and wrote into 3 MB of pages copied
# on write. Linked statically they are resolved at link time (250 left): a
# start took 137 ms of CPU against 157, and the whole suite under ASan 5.7M
# page faults against 6.8M and 222 CPU-s against 234 (2026-12-07). ASan still
# replaces operator new and delete (its runtime links first), so
# alloc-dealloc mismatches are still reported. TSan gains nothing from it.
# tools/asan-skip.txt: the test objects leave RapidCheck's own code (and the
# standard templates over its types) unchecked; see there. Under TSan the
# same list saved nothing (160 CPU-s either way), so that build has none.
ASAN_VARS := CXX=$(CLANG) BUILD=build/asan FUZZ_COV=-fsanitize=fuzzer-no-link \
  TEST_OPT="-O0 -fsanitize-ignorelist=tools/asan-skip.txt" \
  TEST_LDFLAGS="-no-pie -static-libstdc++" \
  OPT="-O1 -gline-tables-only -fno-omit-frame-pointer -fsanitize=address,undefined -fsanitize-address-use-after-return=never -fno-sanitize-recover=all" \
  LDFLAGS="-fsanitize=address,undefined"
# TEST_OPT=-O0 here too: the test objects compile 2.6x faster under TSan than
# at -O1 (the process_pool unit: 43 s to 16 s), and the suite's run took the
# same time (96 s at -O1, 98 s at -O0); the kernel keeps -O1.
# No libFuzzer under TSan: clang 14's TSan reports the edge counters that
# fuzzer-no-link adds (plain global increments) as races between any two
# threads, and deadlocks in libFuzzer's own crash handler after a report. The
# TSan stage runs the standalone driver instead (fuzz/main/standalone.cpp).
# TEST_EXCLUDE: the codec's tests are single-threaded (values encoded and
# decoded in one thread; its two round trips through a pool go the way the
# process-pool tests take under TSan), so TSan has no race to find there,
# and the file was the tree's costliest compile (39 CPU-s of RapidCheck
# generators and shrinkers). ASan+UBSan and g++ still build and run it.
TSAN_VARS := CXX=$(CLANG) BUILD=build/tsan FUZZ_COV= TEST_OPT=-O0 TEST_EXCLUDE=tests/process/codec_test.cpp \
  OPT="-O1 -gline-tables-only -fsanitize=thread" LDFLAGS="-fsanitize=thread"
# atexit_sleep_ms=0: TSan otherwise sleeps a second in every exiting process,
# and the process tests start and stop hundreds of workers. tools/tsan.supp:
# the one known false report (libstdc++'s uninstrumented exception refcount).
TSAN_ENV  := TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 atexit_sleep_ms=0 suppressions=$(CURDIR)/tools/tsan.supp"

asan: deps
	$(MAKE) --no-print-directory test $(ASAN_VARS) TEST_ARGS="$(TEST_ARGS)"

tsan: deps
	tools/tsan_supp_check.sh $(CLANG)
	$(TSAN_ENV) $(MAKE) --no-print-directory test $(TSAN_VARS) TEST_ARGS="$(TEST_ARGS)"

# Fuzzing (README: Fuzzing). `make fuzz` runs every target (or FUZZ_TARGETS)
# for FUZZ_SECONDS each under ASan+UBSan (FUZZ_SAN=tsan: TSan), FUZZ_JOBS at a
# time, and prints executions, coverage and crashes per target.
fuzz: deps
ifeq ($(FUZZ_SAN),tsan)
	$(TSAN_ENV) $(MAKE) --no-print-directory fuzz-run $(TSAN_VARS) FUZZ_SAN=tsan FUZZ_TARGETS="$(FUZZ_TARGETS)"
else ifeq ($(FUZZ_SAN),asan)
	$(MAKE) --no-print-directory fuzz-run $(ASAN_VARS) FUZZ_SAN=asan FUZZ_TARGETS="$(FUZZ_TARGETS)"
else
	$(error FUZZ_SAN must be asan or tsan, not '$(FUZZ_SAN)')
endif

# CI's smoke run: every target briefly under both sanitizers (the suite has
# already replayed every corpus under both; this checks the fuzzing builds).
fuzz-smoke: deps
	$(MAKE) --no-print-directory fuzz FUZZ_SAN=asan FUZZ_SECONDS=$(or $(SMOKE_SECONDS),3)
	$(MAKE) --no-print-directory fuzz FUZZ_SAN=tsan FUZZ_SECONDS=$(or $(SMOKE_SECONDS),1)

fuzz-build: check-shim $(if $(filter tsan,$(FUZZ_SAN)),$(FUZZ_STANDALONE),$(FUZZ_BIN))

fuzz-run: fuzz-build
	tools/fuzz.sh --build $(BUILD) --san $(FUZZ_SAN) --seconds $(FUZZ_SECONDS) --jobs $(FUZZ_JOBS) $(FUZZ_TARGETS)

# libFuzzer's (or AFL++'s, whose compiler maps -fsanitize=fuzzer to its own
# driver) main around one target.
$(BUILD)/fuzz/bin/%: $(BUILD)/fuzz/%.o $(BUILD)/fuzz/harness.o $(BUILD)/fuzz/main/libfuzzer.o $(LIB)
	@mkdir -p $(@D)
	$(CXX) $(CXXFLAGS) $(LDFLAGS) -fsanitize=fuzzer $^ $(LDLIBS) -o $@

# Plain reproducers, any compiler: build/g++/fuzz/standalone/<target> FILE...
fuzz-standalone: deps check-shim $(FUZZ_STANDALONE)

$(BUILD)/fuzz/standalone/%: $(BUILD)/fuzz/%.o $(BUILD)/fuzz/harness.o $(BUILD)/fuzz/main/standalone.o $(LIB)
	@mkdir -p $(@D)
	$(CXX) $(CXXFLAGS) $(LDFLAGS) $^ $(LDLIBS) -o $@

# AFL++ builds of every target (installs Debian's afl++ first): see README.
fuzz-afl: deps
	@tools/deps.sh afl++
	$(MAKE) --no-print-directory fuzz-build CXX=afl-clang-fast++ BUILD=build/afl OPT="-O1 -g" FUZZ_COV=

# The peers' Debian package versions, as the summaries and JSON files name
# them (bench_support.hpp: package_version).
BENCH_PKGS := libabsl-dev libboost-dev libtbb-dev libthread-pool-dev libbenchmark-dev
BENCH_PKG_VERSIONS = $(shell dpkg-query -W -f='$${Package}=$${Version};' $(BENCH_PKGS) 2>/dev/null)

# -g1, as OPT: perf needs functions and line tables, not variables, and
# executor_bench compiled in 16.5 CPU-s with it against 21 with -g.
$(BUILD)/bench/%: bench/%.cpp $(LIB) | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CXX) $(CPPFLAGS) -DKEEL_BENCH_PKG_VERSIONS='"$(BENCH_PKG_VERSIONS)"' $(CXXSTD) $(WARN) -O2 -g1 -pthread $< \
	  $(LIB) $(BENCH_LIBS) $(LDLIBS) -o $@

# `make bench` runs every benchmark program, each writing its results to
# build/bench/<program>.json, then plots them into build/bench/plots/ (PNG,
# gnuplot). `make bench-plots` re-plots the last results without running
# anything; `make bench-plots-check` plots the committed fixtures
# (bench/fixtures/, a real run's JSON) and fails if a plot is missing or
# empty.
# BENCH_SCALE_MAX: the largest thread / worker count of the scaling rows
# (1, 2, 4, 8 by default; doubling up to it).
BENCH_OUT := build/bench
BENCH_SCALE_MAX ?= 8

bench: deps $(BENCH_BIN)
	@mkdir -p $(BENCH_OUT)
	@for b in $(BENCH_BIN); do echo "== $$b"; \
	  KEEL_BENCH_SCALE_MAX=$(BENCH_SCALE_MAX) $$b --json_out=$(BENCH_OUT)/$$(basename $$b).json $(BENCH_ARGS) || exit 1; done
	python3 tools/bench_plots.py $(BENCH_OUT) $(BENCH_OUT)/plots

bench-plots: deps
	python3 tools/bench_plots.py $(BENCH_OUT) $(BENCH_OUT)/plots

# The check also runs sync_bench's uncontended rows briefly, so the JSON a
# program writes goes through the plotter too, and checks that file
# (tools/bench_json_check.py: one-thread rows ran with one thread, versions
# and load averages are there, verdicts agree with their numbers).
BENCH_CHECK := build/bench-plots-check
bench-plots-check: deps $(BUILD)/bench/sync_bench
	rm -rf $(BENCH_CHECK)
	python3 tools/bench_plots.py --require-all bench/fixtures $(BENCH_CHECK)/fixtures
	mkdir -p $(BENCH_CHECK)/live
	$(BUILD)/bench/sync_bench --benchmark_filter='^uncontended' --benchmark_min_time=0.01 \
	  --benchmark_repetitions=1 --json_out=$(BENCH_CHECK)/live/sync_bench.json > $(BENCH_CHECK)/live/sync_bench.txt
	python3 tools/bench_plots.py --require sync_cost $(BENCH_CHECK)/live $(BENCH_CHECK)/live
	python3 tools/bench_json_check.py $(BENCH_CHECK)/live/sync_bench.json
	python3 tools/bench_plots.py --markdown $(BENCH_CHECK)/live $(BENCH_CHECK)/markdown > $(BENCH_CHECK)/summary.md
	grep -Eq '^\| sync_bench \| .* \| [0-9]+ ns \| [0-9]+ ns \|$$' $(BENCH_CHECK)/summary.md || \
	  { echo "bench-plots-check: the Markdown summary lacks sync_bench's round trips" >&2; exit 1; }

# make install: CMake builds and installs keel (CMakeLists.txt), so the CMake
# package is CMake's own (install(EXPORT), a version file): headers,
# libkeel.a, libkeel_mpi.a, keelConfig.cmake and keel.pc, keel-mpi.pc. Its
# build tree is the compiler's, beside this Makefile's objects; the sources
# are the same globs. The sub-make gets JOBS, not our jobserver.
CMAKE_BUILD_TYPE ?= RelWithDebInfo
CMAKE_TREE := $(BUILD)/cmake
install: deps check-shim
	MAKEFLAGS= cmake -S . -B $(CMAKE_TREE) -DCMAKE_CXX_COMPILER=$(firstword $(CXX)) -DCMAKE_BUILD_TYPE=$(CMAKE_BUILD_TYPE)
	MAKEFLAGS= cmake --build $(CMAKE_TREE) --parallel $(JOBS)
	cmake --install $(CMAKE_TREE) --prefix "$(PREFIX)"

# The API reference, build/docs/html (Doxygen, docs/Doxyfile): fails on a
# malformed doc comment, prints the count of undocumented public members
# and fails above DOCS_MAX_UNDOCUMENTED (default 0).
docs: deps
	tools/docs.sh

format: deps
	clang-format-14 -i $$(git ls-files '*.hpp' '*.cpp' '*.h')

# PLAT-2: every kernel data member is an atomic, a platform::Var, or
# classified in proofs/shared_state.txt (tools/check_shared_state.py).
lint: deps check-shared-state check-docs
	clang-format-14 --dry-run -Werror $$(git ls-files '*.hpp' '*.cpp' '*.h')
	python3 tools/mutate.py --check-equivalent
	tools/lint.sh

check-shared-state:
	@python3 tools/check_shared_state.py

# Every public declaration of a public header has a /// doc comment
# (tools/check_docs.py), so the API reads, and Doxygen renders, as a contract.
check-docs:
	@python3 tools/check_docs.py

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(FUZZ_OBJ:.o=.d) $(BENCH_BIN:=.d) $(EXAMPLE_BIN:=.d) \
  $(MPI_OBJ:.o=.d) $(BUILD)/tests/cluster/mpi/scenarios.d \
  $(BUILD)/fuzz/main/libfuzzer.d $(BUILD)/fuzz/main/standalone.d
