#!/bin/bash
# `make bench`: usbsync against real paused QEMUs and umockdev trees, one
# table.  Each case's VMs and tree are set up once; its timing loop runs
# inside one umockdev-run (whose own start-up, ~70 ms, would swamp a run).
# Every QEMU started here is killed by pid on the way out.
#
#   tests/bench/bench.sh USBSYNC FLOOR TIMEIT [RUNS]
#   BENCH_CASES="one_vm watch" HIST_RUNS=5000 (the defaults: every case)
set -u

BIN=$(realpath "$1")
FLOOR=$(realpath "$2")
TIMEIT=$(realpath "$3")
TREEREAD=$(dirname "$TIMEIT")/treeread
HISTGROW=$(dirname "$TIMEIT")/histgrow
DRIVER=$(dirname "$TIMEIT")/../tests/umockdev-driver
RUNS=${4:-30}
TOP=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/lib.sh
. "$TOP/tests/lib.sh"
PEEK=$TOP/tests/qmp-peek
MKTREE=$TOP/tests/bench/mktree
WATCHLAT=$TOP/tests/bench/watchlat
BLOG=$TOP/tests/trees/blog.umockdev
ROOT=$(mktemp -d /tmp/usbsync-bench.XXXXXX)
PIDS=""
DEVPATH_BLOG=/devices/pci0000:00/0000:00:14.0/usb3/3-4
SWEEP_MAX=50

die() { echo "bench: $*" >&2; exit 1; }

# Every QEMU started here, by pid: SIGTERM, then SIGKILL what is still a
# QEMU after 5 s (a pid that exited may already be someone else's).
cleanup() {
	local p
	for p in $PIDS; do is_qemu "$p" && kill "$p" 2>/dev/null; done
	for p in $PIDS; do
		for _ in $(seq 100); do is_qemu "$p" || break; sleep 0.05; done
		is_qemu "$p" && kill -9 "$p" 2>/dev/null
	done
	rm -rf "$ROOT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# vm_start DIR NAME [-device args...]: a paused VM whose monitor is DIR/qmp/NAME.qmp
vm_start() {
	local dir=$1 name=$2; shift 2
	qemu_paused "$dir/qmp/$name.qmp" "$dir/$name.pid" "$@" || die "qemu $name did not start"
	PIDS="$PIDS $(cat "$dir/$name.pid")"
}

# case_dir NAME: a fresh config, QMP, database and run dir for one case
case_dir() {
	local d=$ROOT/$1
	mkdir -p "$d/cfg" "$d/qmp" "$d/db" "$d/run"
	chmod 700 "$d/cfg" "$d/run"
	echo "$d"
}

use() {
	export USBSYNC_CONFIG_DIR=$1/cfg USBSYNC_QMP_DIR=$1/qmp USBSYNC_DB=$1/db/history.db
	export USBSYNC_RUN_DIR=$1/run USBSYNC_TIMEOUT=10
	unset ACTION DEVPATH
}

# stat FILE KEY: a value from the --stats line a run left in FILE
stat() { grep -o "$2=[0-9.]*" "$1" 2>/dev/null | tail -1 | cut -d= -f2; }

ROWS=()
FORMAT='%-13s %4s %8s %8s %8s %8s %5s %7s %7s %7s  %s'
# row CASE RESULT-FILE STATS-FILE QMP-COMMANDS NOTE: one table row from
# timeit's line; the commands and where the time went come from the --stats
# line of the case's last run, unless given
row() {
	local runs med min max rss failed cmds=$4 sysfs=- qmp=- sqlite=-
	read -r runs med min max rss failed < "$2" || die "$1: no result"
	[ "$failed" = 0 ] || echo "bench: $1: $failed runs failed" >&2
	if [ -n "$3" ]; then
		cmds=$(stat "$3" qmp_commands) sysfs=$(stat "$3" ms_sysfs)
		qmp=$(stat "$3" ms_qmp) sqlite=$(stat "$3" ms_sqlite)
	fi
	# shellcheck disable=SC2059
	ROWS+=("$(printf "$FORMAT" "$1" "$runs" "$med" "$min" "$max" "$rss" "$cmds" "$sysfs" \
		"$qmp" "$sqlite" "$5")")
}
median_of() { read -r _ med _ < "$1"; echo "$med"; }
# tree_row CASE FILE NOTE: treeread's "devices median min", in-process
tree_row() {
	local n med min
	read -r n med min < "$2" || die "$1: no result"
	# shellcheck disable=SC2059
	ROWS+=("$(printf "$FORMAT" "$1" "$RUNS" "$med" "$min" - - 0 "$med" - - \
		"usbtree_read in one process, $n devices: $3")")
}

# ---- 1 VM, the blog hub tree: floor, event-noop, event-attach, full-noop ----

bench_one_vm() {
	local d
	d=$(case_dir one)
	use "$d"
	vm_start "$d" 100 -device qemu-xhci,id=xhci -msg timestamp=on \
		-trace enable=usb_port_claim -D "$d/trace.log"
	echo "3-4" > "$d/cfg/100.usb.conf"
	umockdev-run -d "$BLOG" -- "$BIN" reconcile > /dev/null || die "setup: first reconcile failed"
	[ "$("$PEEK" "$d/qmp/100.qmp" usb | wc -l)" = 4 ] || die "setup: 4 devices expected"
	cat > "$d/loop.sh" <<-EOF
	"$TIMEIT" -n $RUNS -- "$FLOOR" "$d/qmp/100.qmp" > "$d/floor.res"
	"$TIMEIT" -n $RUNS -- "$BIN" --help > "$d/start.res"
	ACTION=add DEVPATH=$DEVPATH_BLOG/3-4.1/3-4.1.2 "$TIMEIT" -n $RUNS -o "$d/noop.out" \\
		-- "$BIN" reconcile --stats > "$d/noop.res"
	ACTION=add DEVPATH=$DEVPATH_BLOG/3-4.4 "$TIMEIT" -n $RUNS -o "$d/attach.out" \\
		-b '"$PEEK" "$d/qmp/100.qmp" run "{\\"execute\\":\\"device_del\\",\\"arguments\\":{\\"id\\":\\"usbhost3-4.4\\"}}" > /dev/null' \\
		-t "$d/attach.stamps" -- "$BIN" reconcile --stats > "$d/attach.res"
	"$TIMEIT" -n $RUNS -o "$d/full.out" -- "$BIN" reconcile --trigger manual --stats > "$d/full.res"
	EOF
	umockdev-run -d "$BLOG" -- bash "$d/loop.sh"
	FLOOR_MS=$(median_of "$d/floor.res")
	NOOP_MS=$(median_of "$d/noop.res")
	ATTACH_MS=$(median_of "$d/attach.res")
	row floor "$d/floor.res" "" 2 "connect, greeting, capabilities, qom-list"
	row start-only "$d/start.res" "" 0 "usbsync --help: exec, dynamic linking, exit"
	row event-noop "$d/noop.res" "$d/noop.out" "" "$(ratio "$NOOP_MS" "$FLOOR_MS") x floor"
	INVM_MS=$(in_vm "$d/attach.stamps" "$d/trace.log")
	row event-attach "$d/attach.res" "$d/attach.out" "" \
		"$(ratio "$ATTACH_MS" "$FLOOR_MS") x floor, device_add included; device on its guest port $INVM_MS ms after the fork (median), $(ratio "$INVM_MS" "$FLOOR_MS") x floor"
	row full-noop "$d/full.res" "$d/full.out" "" "manual run (audit), 4 managed devices"
}

# in_vm STAMPS TRACE: median ms from each run's start (timeit -t) to the
# first guest port QEMU claimed after it (its trace log)
in_vm() {
	python3 - "$1" "$2" <<-'EOF'
	import sys
	starts = [float(l) for l in open(sys.argv[1])]
	claims = sorted(float(l.split("@", 1)[1].split(":", 1)[0])
	                for l in open(sys.argv[2], errors="replace") if ":usb_port_claim " in l)
	d = sorted(min((c for c in claims if c > s), default=s) - s for s in starts)
	print("%.2f" % (d[len(d) // 2] * 1000 if d else 0))
	EOF
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

# ---- QEMU >= 10.1: the same attach through tests/qmp-shim ----
# The shim greets as 10.1 and answers qom-list-get by asking the QEMU 7.2
# behind it one property at a time, in Python: its times say nothing about
# a real 10.1, only the commands usbsync asks count here.

bench_qlg() {
	local d
	d=$(case_dir qlg)
	use "$d"
	mkdir -p "$d/real"
	qemu_paused "$d/real/100.qmp" "$d/100.pid" -device qemu-xhci,id=xhci || die "qemu did not start"
	PIDS="$PIDS $(cat "$d/100.pid")"
	"$TOP/tests/qmp-shim" "$d/qmp/100.qmp" "$d/real/100.qmp" > "$d/shim.out" 2>&1 &
	SHIM_PID=$!
	for _ in $(seq 100); do grep -q ready "$d/shim.out" && break; sleep 0.05; done
	echo "3-4" > "$d/cfg/100.usb.conf"
	umockdev-run -d "$BLOG" -- "$BIN" reconcile > /dev/null || die "setup: qlg reconcile failed"
	cat > "$d/loop.sh" <<-EOF
	ACTION=add DEVPATH=$DEVPATH_BLOG/3-4.4 "$TIMEIT" -n 5 -o "$d/attach.out" \\
		-b '"$PEEK" "$d/real/100.qmp" run "{\\"execute\\":\\"device_del\\",\\"arguments\\":{\\"id\\":\\"usbhost3-4.4\\"}}" > /dev/null' \\
		-- "$BIN" reconcile --stats > "$d/attach.res"
	EOF
	umockdev-run -d "$BLOG" -- bash "$d/loop.sh"
	kill "$SHIM_PID" 2>/dev/null
	row attach-10.1 "$d/attach.res" "$d/attach.out" "" \
		"event-attach through tests/qmp-shim (QEMU 10.1 emulated over 7.2): commands count, times do not"
}

# ---- watch: a lone plug, uevent -> device on a guest port ----
# QEMU logs when it claims and releases a guest port (its trace log, with
# timestamps); watchlat compares that with the time the umockdev driver
# stamped once it had sent the uevent.  QEMU is never polled, so nothing
# competes with the watch for its monitor.  Samples are 300 ms apart:
# each is a lone event, not a burst.

bench_watch() {
	local d res add rm cpu
	d=$(case_dir watch)
	use "$d"
	vm_start "$d" 100 -device qemu-xhci,id=xhci,p2=8,p3=8 -msg timestamp=on \
		-trace enable=usb_port_claim -trace enable=usb_port_release -D "$d/trace.log"
	echo "3-4" > "$d/cfg/100.usb.conf"
	"$WATCHLAT" "$DRIVER" "$BLOG" "$TOP/tests/trees/hotplug-3-4.2.umockdev" \
		"/sys$DEVPATH_BLOG/3-4.2" "$d/trace.log" "$RUNS" -- "$BIN" watch --sweep 3600 \
		> "$d/watch.res" 2> "$d/watch.err" || die "watchlat: $(tail -3 "$d/watch.err")"
	read -r _ add _ _ rm cpu mk < "$d/watch.res" || die "watch: no result"
	# shellcheck disable=SC2059
	ROWS+=("$(printf "$FORMAT" watch-add "$RUNS" "$add" "$(cut -d' ' -f3 "$d/watch.res")" \
		"$(cut -d' ' -f4 "$d/watch.res")" - - - - - \
		"uevent to guest port claimed; remove $rm ms; watch CPU $cpu ms/event; $(ratio \
		"$add" "$ATTACH_MS") x event-attach; umockdev made the device in $mk ms")")
}

# ---- history: what a recording run pays after N earlier ones ----
# histgrow records runs the way one-shot attaches do (open, one run,
# close); `history --limit 1` is timed after 10 runs and after HIST_RUNS.

HIST_RUNS=${HIST_RUNS:-5000}

bench_history() {
	local d db grow kib
	d=$(case_dir history)
	db=$d/db/history.db
	"$HISTGROW" "$db" 10 > "$d/grow10" || die "histgrow failed"
	USBSYNC_DB=$db "$TIMEIT" -n "$RUNS" -- "$BIN" history --limit 1 > "$d/open10.res"
	"$HISTGROW" "$db" "$((HIST_RUNS - 10))" > "$d/grow" || die "histgrow failed"
	USBSYNC_DB=$db "$TIMEIT" -n "$RUNS" -- "$BIN" history --limit 1 > "$d/open.res"
	read -r _ grow < "$d/grow"
	kib=$(du -k "$db" "$db-wal" 2>/dev/null | awk '{ n += $1 } END { print n }')
	row history-10 "$d/open10.res" "" 0 "usbsync history --limit 1, 10 runs recorded"
	row "history-$HIST_RUNS" "$d/open.res" "" 0 \
		"the same after $HIST_RUNS runs: $(ratio "$(median_of "$d/open.res")" \
		"$(median_of "$d/open10.res")") x; DB + WAL $kib KiB; recording a run $(cut -d' ' -f1 \
		"$d/grow") ms at first, $grow ms at the end"
}

# ---- timer sweeps: 10 and 50 VMs with 5 devices each, nothing to do ----
# Each VM holds 5 host devices of its own, so the host has 60 or 300 USB
# entries (hubs and devices): each sweep reads its own tree.  The 10-VM
# case uses the first 10 of the 50 VMs.

sweep_tree() {
	local n=$1 hubs="" k
	for k in $(seq "$n"); do hubs="$hubs $k:5"; done
	# shellcheck disable=SC2086
	"$MKTREE" 3 $hubs > "$ROOT/sweep$n.umockdev"
}

bench_sweeps() {
	local d10 d50 k
	d50=$(case_dir sweep50)
	d10=$(case_dir sweep10)
	sweep_tree 10
	sweep_tree $SWEEP_MAX
	for k in $(seq $SWEEP_MAX); do
		vm_start "$d50" "$k" -device qemu-xhci,id=xhci,p2=8,p3=8
		echo "port 3-$k" > "$d50/cfg/$k.usb.conf"
		if [ "$k" -le 10 ]; then
			ln -s "$d50/qmp/$k.qmp" "$d10/qmp/$k.qmp"
			cp "$d50/cfg/$k.usb.conf" "$d10/cfg/"
		fi
	done
	use "$d50"
	umockdev-run -d "$ROOT/sweep$SWEEP_MAX.umockdev" -- "$BIN" reconcile > /dev/null ||
		die "setup: sweep attach failed"
	[ "$("$PEEK" "$d50/qmp/$SWEEP_MAX.qmp" usb | wc -l)" = 5 ] || die "setup: 5 devices expected"
	for k in 10 $SWEEP_MAX; do
		cat > "$ROOT/sweep$k.sh" <<-EOF
		"$TIMEIT" -n $RUNS -o "$ROOT/sweep$k/sweep.out" \\
			-- "$BIN" reconcile --trigger timer --all --stats > "$ROOT/sweep$k/sweep.res"
		EOF
		use "$ROOT/sweep$k"
		umockdev-run -d "$ROOT/sweep$k.umockdev" -- bash "$ROOT/sweep$k.sh"
	done
	# The host tree alone, read RUNS times in one process: through
	# umockdev's preload, and as plain files without it.
	umockdev-run -d "$ROOT/sweep$SWEEP_MAX.umockdev" -- sh -c \
		"'$TREEREAD' /sys $RUNS > '$ROOT/tree.pre'; env -u LD_PRELOAD '$TREEREAD' \"\$UMOCKDEV_DIR/sys\" $RUNS > '$ROOT/tree.native'" ||
		die "treeread failed"
	row sweep-10vm "$d10/sweep.res" "$d10/sweep.out" "" \
		"$(ratio "$(median_of "$d10/sweep.res")" "$NOOP_MS") x event-noop, 60 USB entries"
	tree_row tree-300 "$ROOT/tree.pre" "umockdev's preload, as in every row above"
	tree_row tree-300-raw "$ROOT/tree.native" "the same files without the preload"
	row sweep-50vm "$d50/sweep.res" "$d50/sweep.out" "" \
		"$(ratio "$(median_of "$d50/sweep.res")" "$NOOP_MS") x event-noop, $(ratio \
		"$(median_of "$d50/sweep.res")" "$(median_of "$d10/sweep.res")") x sweep-10vm, 300 USB entries"
}

# ---- burst-40: a 7-device hub appears, 40 udev runs at once ----

bench_burst() {
	local d ids="" k
	d=$(case_dir burst)
	use "$d"
	"$MKTREE" 3 4:7 > "$ROOT/hub7.umockdev"
	vm_start "$d" 100 -device qemu-xhci,id=xhci,p2=8,p3=8
	echo "3-4" > "$d/cfg/100.usb.conf"
	for k in $(seq 7); do
		ids="$ids \"{\\\"execute\\\":\\\"device_del\\\",\\\"arguments\\\":{\\\"id\\\":\\\"usbhost3-4.$k\\\"}}\""
	done
	# Before each burst: check the last one converged, count the runs that
	# talked to QEMU, then unplug the hub from the VM.
	cat > "$d/between.sh" <<-EOF
	if [ -e "$d/burst.out.1" ]; then
		n=\$("$PEEK" "$d/qmp/100.qmp" usb | wc -l)
		[ "\$n" = 7 ] || echo "bench: burst-40 left \$n of 7 devices" >&2
		grep -l "qmp_commands=[1-9]" "$d"/burst.out.* | wc -l >> "$d/talked"
	fi
	"$PEEK" "$d/qmp/100.qmp" run $ids > /dev/null 2>&1 || true
	EOF
	cat > "$d/loop.sh" <<-EOF
	ACTION=add DEVPATH=$DEVPATH_BLOG/3-4.7 "$TIMEIT" -n $RUNS -w 1 -p 40 -o "$d/burst.out" \\
		-b 'bash "$d/between.sh"' -- "$BIN" reconcile --stats > "$d/burst.res"
	bash "$d/between.sh"
	EOF
	umockdev-run -d "$ROOT/hub7.umockdev" -- bash "$d/loop.sh"
	local talked cmds
	# runs that talked to QEMU, per burst: median and most
	talked=$(sort -n "$d/talked" | awk '{ v[NR] = $1 } END { printf "%s (at most %s)", v[int((NR + 1) / 2)], v[NR] }')
	cmds=$(cat "$d"/burst.out.* | grep -o "qmp_commands=[0-9]*" | cut -d= -f2 |
		awk '{ n += $1 } END { print n }')
	row burst-40 "$d/burst.res" "" "$cmds" \
		"last start to last exit; $talked of 40 runs talked to QEMU; $(ratio \
		"$(median_of "$d/burst.res")" "$ATTACH_MS") x event-attach"
}

command -v qemu-system-x86_64 > /dev/null || die "qemu-system-x86_64 missing (make deps)"
command -v umockdev-run > /dev/null || die "umockdev-run missing (make deps)"
echo "usbsync bench: $RUNS runs per case, $(nproc) CPUs, $(uname -r), $(qemu-system-x86_64 --version | head -1)"
# BENCH_CASES picks cases (the ratios to event-attach need "one_vm")
for c in ${BENCH_CASES:-one_vm qlg watch history sweeps burst}; do
	"bench_$c"
done
# shellcheck disable=SC2059
printf "$FORMAT\n" case runs median min max "peak RSS" qmp sysfs qmp sqlite note
# shellcheck disable=SC2059
printf "$FORMAT\n" "" "" ms ms ms KiB cmds ms ms ms ""
printf '%s\n' "${ROWS[@]}"
