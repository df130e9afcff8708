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
		$(BENCH_BUILD)/bench/treeread $(BENCH_BUILD)/bench/histgrow $(BENCH_BUILD)/bench/uevstamp \
		$(BENCH_BUILD)/tests/umockdev-driver
	@tests/bench/bench.sh $(BENCH_BUILD)/usbsync $(BENCH_BUILD)/bench/floor \
		$(BENCH_BUILD)/bench/timeit $(BENCH_RUNS)

# The tree reader and the history grower link the library (they time
# usbtree_read_at and store_*).
$(BUILD)/bench/treeread $(BUILD)/bench/histgrow: $(BUILD)/bench/%: tests/bench/%.c $(BUILD)/libusbsync.a
	@mkdir -p $(dir $@)
	$(call say,CCLD,$@)
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $^ $(ALL_LDFLAGS) $(LIBS)

# The uevent stamper listens with libudev, as the watch does.
$(BUILD)/bench/uevstamp: tests/bench/uevstamp.c
	@mkdir -p $(dir $@)
	$(call say,CCLD,$@)
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $< $(ALL_LDFLAGS) $(LIBS)

# The floor client and the timer: plain C, the project's flags.
$(BUILD)/bench/%: tests/bench/%.c
	@mkdir -p $(dir $@)
	$(call say,CCLD,$@)
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $< $(ALL_LDFLAGS)
