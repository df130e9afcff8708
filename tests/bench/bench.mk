# `make bench`: usbsync against real paused QEMUs and umockdev trees
# (tests/bench/bench.sh prints one table).  Not part of `make check`; run
# it after check has installed what it needs.
#   make bench BENCH_RUNS=50
BENCH_BUILD ?= build-bench
BENCH_RUNS ?= 30
BENCH_CFLAGS ?= -O2 -DNDEBUG

.PHONY: bench
bench:
	@$(MAKE) --no-print-directory BUILD=$(BENCH_BUILD) CFLAGS="$(BENCH_CFLAGS)" \
		$(BENCH_BUILD)/usbsync $(BENCH_BUILD)/bench/floor $(BENCH_BUILD)/bench/timeit \
		$(BENCH_BUILD)/bench/treeread
	@tests/bench/bench.sh $(BENCH_BUILD)/usbsync $(BENCH_BUILD)/bench/floor \
		$(BENCH_BUILD)/bench/timeit $(BENCH_RUNS)

# The tree reader links the library (it times usbtree_read_at).
$(BUILD)/bench/treeread: tests/bench/treeread.c $(BUILD)/libusbsync.a
	@mkdir -p $(dir $@)
	$(call say,CCLD,$@)
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $^ $(ALL_LDFLAGS) $(LIBS)

# The floor client and the timer: plain C, the project's flags.
$(BUILD)/bench/%: tests/bench/%.c
	@mkdir -p $(dir $@)
	$(call say,CCLD,$@)
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $< $(ALL_LDFLAGS)
