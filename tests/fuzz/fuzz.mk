# tests/fuzz/fuzz.mk - fuzzing, sanitizers and lint; GNUmakefile includes it.
#
#   make fuzz          every libFuzzer target for FUZZ_SECONDS (300) each
#   make fuzz-smoke    every target for FUZZ_SMOKE_SECONDS (20) each: the
#                      corpus, then new inputs
#   make fuzz-json     one target for FUZZ_SECONDS (also fuzz-config,
#                      fuzz-port, fuzz-hostuse, fuzz-qtree,
#                      fuzz-pve, fuzz-qomvals, fuzz-qlg)
#   make asan          usbsync and the unit tests built by clang with ASan
#                      and UBSan in build-asan; unit tests under umockdev
#   make integration-asan  tests/integration.sh against that build of
#                      usbsync and its C test helpers (.ci/run runs it
#                      after make check)
#   make lint          cppcheck and clang-tidy, zero findings allowed, and
#                      no modules that depend on each other in a circle
#   make check-extra   lint, asan and fuzz-smoke: what `make check` adds
#
# Fuzzing needs clang (libFuzzer is in libclang-rt-14-dev).  New inputs
# stay in $(FUZZ_BUILD)/corpus/<target>; a crash is saved as
# $(FUZZ_BUILD)/crash/<target>-* and fails the run.  A crash once found
# is kept as a file in tests/fuzz/corpus/<target>/ (replayed by every
# run) and as a Criterion test named after the bug.

FUZZ_CC ?= clang
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 300
FUZZ_SMOKE_SECONDS ?= 20
FUZZ_TARGETS := json config port hostuse qtree pve qomvals qlg
FUZZ_BINS := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz-%)
# The JSON unit tests' corpora seed the JSON fuzzer as they are.
FUZZ_SEEDS_json := tests/corpus/json-good tests/corpus/json-bad
FUZZ_SANITIZE := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer

.PHONY: fuzz fuzz-smoke fuzz-build fuzz-objs asan integration-asan lint check-extra $(FUZZ_TARGETS:%=fuzz-%)

# Only the parsers and what they use, built by GNUmakefile's own rule
# with coverage for libFuzzer (fuzzer-no-link: no second main()).
FUZZ_OBJS := $(addprefix $(FUZZ_BUILD)/,common/err.o common/grow.o common/text.o common/trust.o \
	qmp/json.o qmp/qomvals.o reconcile/hostuse.o reconcile/config.o reconcile/mapping.o reconcile/port.o \
	reconcile/publish.o reconcile/pveconf.o reconcile/qdev.o reconcile/qlg.o reconcile/qtree.o)
ifneq ($(BUILD),$(FUZZ_BUILD))
fuzz-objs:
	@$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) \
		SANITIZE=fuzzer-no-link,address,undefined fuzz-objs
else
fuzz-objs: $(FUZZ_OBJS)
	@:
endif

$(FUZZ_BUILD)/fuzz-%: tests/fuzz/fuzz-%.c fuzz-objs
	$(FUZZ_CC) $(ALL_CFLAGS) $(FUZZ_SANITIZE) -o $@ $< $(FUZZ_OBJS) $(ALL_LDFLAGS)

fuzz-build: $(FUZZ_BINS)

$(FUZZ_TARGETS:%=fuzz-%): fuzz-%: $(FUZZ_BUILD)/fuzz-%
	@tests/fuzz/run $(FUZZ_BUILD) $* $(FUZZ_SECONDS) $(FUZZ_SEEDS_$*)

fuzz: $(FUZZ_BINS)
	@set -e; $(foreach t,$(FUZZ_TARGETS),tests/fuzz/run $(FUZZ_BUILD) $(t) $(FUZZ_SECONDS) $(FUZZ_SEEDS_$(t));)

fuzz-smoke: $(FUZZ_BINS)
	@set -e; $(foreach t,$(FUZZ_TARGETS),tests/fuzz/run $(FUZZ_BUILD) $(t) $(FUZZ_SMOKE_SECONDS) $(FUZZ_SEEDS_$(t));)

# ---- AddressSanitizer + UBSan over the unit tests -----------------------
# clang, because gcc's libasan refuses to start under umockdev's preload.
# Every report fails the run: UBSan is built not to recover, ASan halts on
# the first error, and leaks count.  But Criterion ignores how a test's
# worker exits once the test has passed, and LeakSanitizer reports only
# at exit, so the output is searched for reports too.  (log_path would be
# neater, but the sanitizers then crash at start under umockdev.)
ASAN_CC ?= clang
ASAN_BUILD ?= build-asan
ASAN_ENV := ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
ASAN_MAKE = $(MAKE) --no-print-directory CC=$(ASAN_CC) SANITIZE=address,undefined BUILD=$(ASAN_BUILD)
ASAN_REPORT := (Address|Leak|UndefinedBehavior)Sanitizer|runtime error:

asan:
	@$(ASAN_MAKE) all
	@{ $(ASAN_ENV) $(ASAN_MAKE) unit 2>&1; echo $$? > $(ASAN_BUILD)/unit.rc; } | tee $(ASAN_BUILD)/unit.log
	@if grep -Eq '$(ASAN_REPORT)' $(ASAN_BUILD)/unit.log; then \
		echo "asan: sanitizer reports in $(ASAN_BUILD)/unit.log" >&2; exit 1; fi
	@exit $$(cat $(ASAN_BUILD)/unit.rc)

# The whole integration suite again, on the sanitized binary and
# umockdev-driver: real runs against real QEMU are where an empty plan
# or a leak at exit shows.  The harness fails a test whose programs wrote
# any sanitizer report to stderr (see its head comment).
integration-asan:
	@$(ASAN_MAKE) all $(ASAN_BUILD)/tests/umockdev-driver
	@$(ASAN_ENV) IT_TIME_SCALE=3 tests/integration.sh $(ASAN_BUILD)/usbsync

# ---- lint ------------------------------------------------------------------
# The program and the fuzz targets (the Criterion tests are macro soup to
# both tools).  The check sets, and why each left-out check is left out,
# are in tests/fuzz/lint/.  Any finding fails.
LINT_SRCS = $(LIB_SRCS) cmd/main.c $(wildcard tests/fuzz/fuzz-*.c)
LINT_CFLAGS = -std=gnu11 -Wall -Wextra -I. -D_GNU_SOURCE $(shell $(PKG_CONFIG) --cflags $(PKGS))
# tests/fuzz/lint/circles reads the includes and the built objects' symbols.
CIRCLE_FILES = $(LIB_SRCS) cmd/main.c $(wildcard common/*.h reconcile/*.h qmp/*.h store/*.h cmd/*.h)

lint: $(LIB_OBJS) $(BUILD)/cmd/main.o
	@tests/fuzz/lint/circles $(BUILD) $(CIRCLE_FILES)
	@cppcheck --std=c11 --enable=warning,style,performance,portability --error-exitcode=1 \
		--quiet --inline-suppr -I. -D_GNU_SOURCE \
		--suppress-xml=tests/fuzz/lint/cppcheck-suppressions.xml $(LINT_SRCS)
	@mkdir -p $(BUILD)
	@clang-tidy --quiet --config-file=tests/fuzz/lint/clang-tidy.yaml $(LINT_SRCS) \
		-- $(LINT_CFLAGS) > $(BUILD)/clang-tidy.log 2>&1; rc=$$?; \
		grep -v ' warnings\? generated\.$$' $(BUILD)/clang-tidy.log >&2; exit $$rc
	@echo "lint: cppcheck and clang-tidy found nothing"

check-extra: lint asan fuzz-smoke

-include $(FUZZ_BINS:=.d)
