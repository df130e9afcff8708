#!/bin/bash
# Integration tests: the real usbsync binary against real paused QEMU VMs
# and fake host USB trees (umockdev).  Every test runs in a subshell on its
# own temp dir and kills the VMs it started, by pid, whatever happens.
#
#   tests/integration.sh build/usbsync [TEST_NAME_PATTERN]
#
# Everything a test's programs write to stderr is kept in files under its
# temp dir, and a test fails when any of them holds a sanitizer report
# (`make integration-asan` runs this against a sanitized build): an exit
# code does not always show one (LeakSanitizer reports at exit, some runs'
# status is not the point of the test), and log_path cannot be used under
# umockdev's preload.
set -u

BIN=$(realpath "$1")
PATTERN=${2:-}
TOP=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=tests/lib.sh
. "$TOP/tests/lib.sh"
PEEK=$TOP/tests/qmp-peek
DRIVER=$(dirname "$BIN")/tests/umockdev-driver
TREES=$TOP/tests/trees
ROOT=$(mktemp -d /tmp/usbsync-it.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT

# ---- helpers (used inside a test's subshell) --------------------------------

fail() { echo "    FAIL: $*" >&2; exit 1; }

setup() {
	T=$ROOT/$1
	mkdir -p "$T/cfg" "$T/qmp"
	chmod 700 "$T/cfg"
	export USBSYNC_CONFIG_DIR=$T/cfg USBSYNC_QMP_DIR=$T/qmp USBSYNC_DB=$T/db/history.db
	export USBSYNC_TIMEOUT=5 USBSYNC_RUN_DIR=$T/run
	unset ACTION DEVPATH
	TREE=$TREES/blog.umockdev
	VMPIDS=""
	trap 'for p in $VMPIDS; do kill "$p" 2>/dev/null; done' EXIT
	trap 'exit 143' TERM
}

# vm_start NAME [qemu -device args...]; default: one qemu-xhci with id xhci
vm_start() {
	local name=$1; shift
	qemu_paused "$T/qmp/$name.qmp" "$T/$name.pid" "$@" || fail "qemu $name did not start"
	VMPIDS="$VMPIDS $(cat "$T/$name.pid")"
}

vm_stop() {
	local pid
	pid=$(cat "$T/$1.pid")
	kill "$pid"
	for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.05; done
	fail "qemu $1 (pid $pid) did not stop"
}

conf() { printf '%s\n' "$2" > "$T/cfg/$1.usb.conf"; }

# us ARGS...: run usbsync under the fake tree; output in $OUT/$ERR, status in
# $RC; every run's stderr is also kept in $T/us.err for the sanitizer check
us() {
	umockdev-run -d "$TREE" -- "$BIN" "$@" > "$T/out" 2> "$T/err"
	RC=$?
	OUT=$(cat "$T/out")
	ERR=$(cat "$T/err")
	cat "$T/err" >> "$T/us.err"
}

# vm_proxied NAME "QEMU ARGS" MODE [ARGS...]: a VM (QEMU ARGS: its
# devices, "" for one qemu-xhci) whose monitor is reached through
# tests/qmp-proxy, which injects the fault MODE names
vm_proxied() {
	local name=$1 args=$2; shift 2
	mkdir -p "$T/real"
	# shellcheck disable=SC2086
	qemu_paused "$T/real/$name.qmp" "$T/$name.pid" $args || fail "qemu $name did not start"
	VMPIDS="$VMPIDS $(cat "$T/$name.pid")"
	"$TOP/tests/qmp-proxy" "$T/qmp/$name.qmp" "$T/real/$name.qmp" "$@" > "$T/proxy.$name" 2>&1 3>&- &
	PROXY_PID=$!
	VMPIDS="$VMPIDS $PROXY_PID"
	wait_until 3000 grep -qs ready "$T/proxy.$name" || fail "proxy for $name did not start"
}

# usb VM: the VM's usb-host devices as QEMU reports them, "id hostbus hostport bus port"
usb() {
	local sock=$T/qmp/$1.qmp
	[ -S "$T/real/$1.qmp" ] && sock=$T/real/$1.qmp
	"$PEEK" "$sock" usb || fail "qmp-peek $1 failed"
}
usb_ids() { usb "$1" | cut -d' ' -f1 | tr '\n' ' ' | sed 's/ $//'; }
qmp_run() { "$PEEK" "$T/qmp/$1.qmp" run "${@:2}" > /dev/null || fail "qmp run on $1 failed"; }

expect_rc() { [ "$RC" = "$1" ] || fail "exit $RC, expected $1; stdout: $OUT; stderr: $ERR"; }
expect_eq() { [ "$1" = "$2" ] || fail "$3: got '$1', expected '$2'"; }
expect_in() { case "$1" in *"$2"*) ;; *) fail "$3: '$2' not in: $1" ;; esac; }
expect_not_in() { case "$1" in *"$2"*) fail "$3: '$2' unexpectedly in: $1" ;; esac; }

# tree_without PORT...: the current tree minus those devices and all below them
tree_without() {
	local out=$T/tree-$RANDOM.umockdev
	"$TOP/tests/tree-without" "$TREE" "$@" > "$out" || fail "tree-without"
	TREE=$out
}

# wait_until MS CMD...: poll CMD every 20 ms until it succeeds; false after
# MS times IT_TIME_SCALE (integration-asan sets 3: sanitized runs are slower)
wait_until() {
	local ms=$(( $1 * ${IT_TIME_SCALE:-1} )); shift
	local end=$(( $(date +%s%N) / 1000000 + ms ))
	until "$@"; do
		[ $(( $(date +%s%N) / 1000000 )) -lt $end ] || return 1
		sleep 0.02
	done
}
has_ids() { [ "$(usb_ids "$1")" = "$2" ]; }

history_json() { "$BIN" history --json "$@"; }

# ---- tests -------------------------------------------------------------------

test_blog_hub_tree_attaches_all_four_devices_at_once() {
	vm_start 100
	conf 100 "3-4"
	us reconcile
	expect_rc 0
	expect_eq "$(usb 100)" "usbhost3-4.1.1 3 4.1.1 xhci.0 4
usbhost3-4.1.2 3 4.1.2 xhci.0 3
usbhost3-4.1.4 3 4.1.4 xhci.0 2
usbhost3-4.4 3 4.4 xhci.0 1" "devices in vm 100"
	expect_in "$OUT" "add  3-4.1.1" "report"
}

test_second_run_is_a_noop() {
	vm_start 100
	conf 100 "port 3-4.1"
	us reconcile; expect_rc 0
	local runs before
	before=$(usb 100)
	runs=$(history_json | grep -o '"run":' | wc -l)
	us reconcile
	expect_rc 0
	expect_in "$OUT" "in sync" "second run"
	expect_eq "$(usb 100)" "$before" "devices after second run"
	expect_eq "$(history_json | grep -o '"run":' | wc -l)" "$runs" "history rows after a no-op run"
	us reconcile --check; expect_rc 0
}

test_unplugged_device_is_removed_on_next_run() {
	vm_start 100
	conf 100 "3-4"
	us reconcile; expect_rc 0
	tree_without 3-4.1.4
	us status
	echo "$OUT" | grep -q "usbhost3-4.1.4 *0781:5567 *Cruzer Blade *would remove: device unplugged" ||
		fail "status does not name the unplugged device as history saw it: $OUT"
	us reconcile
	expect_rc 0
	expect_eq "$(usb_ids 100)" "usbhost3-4.1.1 usbhost3-4.1.2 usbhost3-4.4" "after unplug"
	expect_in "$OUT" "device unplugged" "reason"
	# sysfs no longer knows it: named as history last saw it on that port
	expect_in "$OUT" "0781:5567  Cruzer Blade" "names the unplugged device"
	expect_eq "$(history_json | grep -o '"op":"del"[^}]*"vidpid":"0781:5567"' | wc -l)" "1" \
		"history names it too"
}

test_unplugging_a_whole_hub_removes_everything_behind_it() {
	vm_start 100
	conf 100 "3-4"
	us reconcile; expect_rc 0
	tree_without 3-4.1
	us reconcile; expect_rc 0
	expect_eq "$(usb_ids 100)" "usbhost3-4.4" "after hub unplug"
}

test_device_moves_between_two_vms() {
	vm_start 100
	vm_start 101
	conf 100 "3-4"
	conf 101 "1-1"
	us reconcile; expect_rc 0
	expect_in "$(usb_ids 100)" "usbhost3-4.4" "before move"
	conf 100 $'3-4\nexclude port 3-4.4'
	conf 101 $'1-1\n3-4.4'
	us reconcile
	expect_rc 0
	expect_eq "$(usb_ids 100)" "usbhost3-4.1.1 usbhost3-4.1.2 usbhost3-4.1.4" "vm 100 after move"
	expect_eq "$(usb_ids 101)" "usbhost1-1 usbhost3-4.4" "vm 101 after move"
	# the removal is reported before the addition
	local del add
	del=$(grep -n "del  3-4.4" "$T/out" | cut -d: -f1)
	add=$(grep -n "101  add  3-4.4" "$T/out" | cut -d: -f1)
	[ -n "$del" ] && [ -n "$add" ] && [ "$del" -lt "$add" ] || fail "del not before add: $OUT"
}

test_conflict_changes_nothing_and_exits_2() {
	vm_start 100
	vm_start 101
	conf 100 "3-4.4"
	us reconcile; expect_rc 0
	conf 101 "device 046d:0825"
	conf 100 $'3-4.4\n1-1'
	us reconcile
	expect_rc 2
	expect_eq "$(usb_ids 100)" "usbhost1-1 usbhost3-4.4" "conflicted device stays where it was"
	expect_eq "$(usb_ids 101)" "" "nothing added to vm 101"
	expect_in "$OUT" "wanted by vms 100, 101" "conflict report"
	us reconcile
	expect_rc 2
	expect_in "$OUT" "conflict" "reported on every run"
}

# Found by the sanitized pass: the empty plan reached qsort with a NULL
# array, and UBSan stopped reconcile and status there.
test_a_running_vm_whose_device_is_not_plugged_in_is_in_sync() {
	vm_start 100
	conf 100 "port 9-9"
	us reconcile
	expect_rc 0
	expect_in "$OUT" "in sync" "reconcile"
	us status
	expect_rc 0
	expect_in "$OUT" "vm 100: running, 0 changes pending" "status"
}

test_excluded_device_is_not_attached() {
	vm_start 100
	conf 100 $'port 3-4\nexclude port 3-4.1.4\nexclude device 046d:0825'
	us reconcile
	expect_rc 0
	expect_eq "$(usb_ids 100)" "usbhost3-4.1.1 usbhost3-4.1.2" "excluded devices absent"
}

test_missing_socket_is_not_running_not_an_error() {
	vm_start 100
	conf 100 "3-4.4"
	conf 102 "3-4.1"
	us reconcile
	expect_rc 0
	expect_eq "$(usb_ids 100)" "usbhost3-4.4" "running vm reconciled"
	us status
	expect_in "$OUT" "vm 102: not running" "status"
	# a socket file nobody listens on: QEMU died
	vm_start 103
	conf 103 "1-1"
	kill -9 "$(cat "$T/103.pid")"
	sleep 0.2
	us reconcile
	expect_rc 0
	us status
	expect_in "$OUT" "vm 103: not running" "dead qemu"
}

test_config_syntax_error_leaves_that_vm_alone_and_reconciles_others() {
	vm_start 100
	vm_start 101
	conf 100 "3-4.1"
	conf 101 "3-4.4"
	us reconcile; expect_rc 0
	conf 100 $'3-4.1\nprot 3-4.4'
	conf 101 $'3-4.4\n1-1'
	tree_without 3-4.1.1
	us reconcile
	expect_rc 2
	expect_in "$ERR" "100.usb.conf:2: expected" "error names file and line"
	expect_eq "$(usb_ids 100)" "usbhost3-4.1.1 usbhost3-4.1.2 usbhost3-4.1.4" "broken vm untouched, even its unplugged device"
	expect_eq "$(usb_ids 101)" "usbhost1-1 usbhost3-4.4" "other vm reconciled"
}

test_dry_run_changes_nothing_and_check_reports_drift() {
	vm_start 100
	conf 100 "3-4.1"
	us reconcile --dry-run
	expect_rc 0
	expect_in "$OUT" "planned" "dry run shows the plan"
	expect_in "$OUT" "3 changes pending" "dry run summary"
	expect_eq "$(usb_ids 100)" "" "dry run added nothing"
	us reconcile --check
	expect_rc 3
	us reconcile --dry-run --json
	expect_in "$OUT" '"dry_run":true' "json"
	expect_in "$OUT" '"result":"planned"' "json plan"
	local applied
	applied=$(history_json | grep -c '"result":"ok"')
	expect_eq "$applied" "0" "nothing stored as applied"
	us reconcile; expect_rc 0
	us reconcile --check; expect_rc 0
}

test_history_records_changes_and_filters() {
	vm_start 100
	conf 100 "3-4"
	ACTION=add DEVPATH=/devices/pci0000:00/0000:00:14.0/usb3/3-4/3-4.4 us reconcile
	expect_rc 0
	local h
	h=$(history_json)
	expect_eq "$(echo "$h" | grep -o '"op":"add"' | wc -l)" "4" "four adds recorded"
	expect_in "$h" '"trigger":"udev","action":"add","devpath":"/devices/pci0000:00/0000:00:14.0/usb3/3-4/3-4.4"' "udev trigger"
	expect_in "$h" '"vidpid":"046d:c52b","product":"USB Receiver","result":"ok"' "device details"
	tree_without 3-4.1.2
	us reconcile --trigger timer; expect_rc 0
	h=$(history_json --limit 1)
	expect_in "$h" '"trigger":"timer"' "newest first"
	expect_in "$h" '"op":"del","port":"3-4.1.2"' "removal recorded"
	expect_eq "$(history_json --port 3-4.1 | grep -o '"op"' | wc -l)" "4" "port filter is by component"
	expect_eq "$(history_json --device 04D9:0169 | grep -o '"op"' | wc -l)" "2" "device filter"
	expect_eq "$(history_json --vm 999 | tr -d '\n')" "[]" "vm filter"
	expect_eq "$(history_json --since 1h | grep -o '"op"' | wc -l)" "5" "since"
	expect_eq "$(history_json --until 2000-01-01 | tr -d '\n')" "[]" "until"
	"$BIN" history > "$T/h.txt" || fail "history failed"
	expect_in "$(cat "$T/h.txt")" "last run:" "last run time"
	"$BIN" history --since yesterday > /dev/null 2>> "$T/quiet.err" && fail "bad --since accepted"
	return 0
}

test_multi_digit_buses_match_by_component() {
	TREE=$TREES/multidigit.umockdev
	vm_start 100 -device qemu-xhci,id=xhci,p2=8,p3=8
	conf 100 $'port 1-1\nport 10-1.1'
	us reconcile
	expect_rc 0
	expect_eq "$(usb_ids 100)" "usbhost1-1.3.2 usbhost10-1.1" "only whole-component matches"
}

test_deep_hub_chain_is_followed() {
	TREE=$TREES/deep.umockdev
	vm_start 100 -device qemu-xhci,id=xhci,p2=15,p3=15
	conf 100 "2-1.1.1.1"
	us reconcile
	expect_rc 0
	expect_in "$(usb_ids 100)" "usbhost2-1.1.1.1.1.1.1" "deepest device"
	expect_not_in "$(usb_ids 100)" "usbhost2-1.2" "outside the port"
}

test_busy_monitor_times_out_and_other_vms_are_still_reconciled() {
	vm_start 100
	vm_start 101
	conf 100 "3-4.4"
	conf 101 "1-1"
	"$PEEK" "$T/qmp/100.qmp" hold 20 > "$T/hold" &
	local holder=$!
	for _ in $(seq 100); do grep -q holding "$T/hold" && break; sleep 0.05; done
	# timed by usbsync itself: umockdev-run alone can take seconds to start
	# on a loaded machine
	local ms
	USBSYNC_TIMEOUT=1 us reconcile --stats
	kill $holder 2>/dev/null; wait $holder 2>/dev/null
	expect_rc 1
	expect_in "$ERR" "vm 100" "error names the vm"
	expect_in "$ERR" "100.qmp" "error names the socket"
	ms=$(echo "$ERR" | grep -o 'ms_total=[0-9]*' | cut -d= -f2)
	[ -n "$ms" ] && [ "$ms" -lt 4000 ] || fail "took ${ms:-?} ms"
	expect_eq "$(usb_ids 101)" "usbhost1-1" "other vm reconciled"
	expect_in "$(history_json)" '"vm":"100","op":"error"' "timeout recorded"
}

# A VM that could not be read is not known to be in sync: the summary said
# "in sync: nothing to do" beside the error all the same.
test_a_vm_that_could_not_be_checked_is_never_reported_in_sync() {
	vm_start 100
	conf 100 "port 9-9"
	"$PEEK" "$T/qmp/100.qmp" hold 20 > "$T/hold" &
	local holder=$!
	VMPIDS="$VMPIDS $holder"
	wait_until 5000 grep -q holding "$T/hold" || fail "qmp-peek did not take the monitor"
	USBSYNC_TIMEOUT=0.5 us reconcile
	expect_rc 1
	expect_in "$ERR" "vm 100" "error"
	expect_not_in "$OUT" "in sync" "summary with the monitor busy"
	expect_in "$OUT" "not checked: 1 VM" "summary with the monitor busy"
	USBSYNC_TIMEOUT=0.5 us reconcile --dry-run
	expect_not_in "$OUT" "in sync" "dry run with the monitor busy"
	kill $holder; wait $holder 2>/dev/null
	conf 100 "prot 9-9"
	us reconcile
	expect_rc 2
	expect_not_in "$OUT" "in sync" "summary with a broken config"
	conf 100 "port 9-9"
	us reconcile
	expect_rc 0
	expect_in "$OUT" "in sync: nothing to do" "once it can be read"
}

test_foreign_usb_host_on_the_same_port_is_skipped() {
	vm_start 100
	qmp_run 100 '{"execute":"device_add","arguments":{"driver":"usb-host","id":"usb0","bus":"xhci.0","port":"1","hostbus":3,"hostport":"4.4"}}'
	conf 100 "3-4.4"
	us reconcile
	expect_rc 0
	expect_eq "$(usb_ids 100)" "usb0" "not doubled"
	expect_in "$OUT" "already passed through by 'usb0'" "reported"
}

test_proxmox_style_controller_fills_ports_from_the_top() {
	vm_start 100 -device qemu-xhci,p2=15,p3=15,id=xhci -device usb-tablet,id=tablet,bus=xhci.0,port=1
	conf 100 "3-4.1"
	us reconcile
	expect_rc 0
	expect_eq "$(usb 100 | cut -d' ' -f1,5 | tr '\n' ' ')" "usbhost3-4.1.1 15 usbhost3-4.1.2 14 usbhost3-4.1.4 13 " "ports"
}

test_proxmox_usbN_ports_of_current_and_pending_config_are_never_taken() {
	vm_start 100 -device qemu-xhci,p2=15,p3=15,id=xhci
	conf 100 "3-4.1"
	# usb13 (port 14) is configured, usb12 (port 13) pending, usb11 only in
	# a snapshot: usbsync takes 15, then skips 14 and 13, then 12.
	printf 'usb13: host=1-1\nmemory: 512\n\n[PENDING]\nusb12: host=1-2\n\n[before]\nusb11: host=1-3\n' \
		> "$T/cfg/100.conf"
	us reconcile
	expect_rc 0
	expect_eq "$(usb 100 | cut -d' ' -f1,5 | tr '\n' ' ')" "usbhost3-4.1.1 15 usbhost3-4.1.2 12 usbhost3-4.1.4 11 " "ports"
	us status
	expect_in "$OUT" "reserved for Proxmox usbN: xhci.0 ports 13,14" "status"
	# A <vm>.conf Proxmox could not parse reserves 1..14: a warning, not a failure.
	conf 100 "3-4"
	printf 'usb0: host=1-1\nnot a config line\n' > "$T/cfg/100.conf"
	us reconcile
	expect_rc 1
	expect_in "$ERR" "100.conf:2: a line Proxmox cannot parse" "warning"
	expect_eq "$(usb_ids 100)" "usbhost3-4.1.1 usbhost3-4.1.2 usbhost3-4.1.4" "3-4.4 found no free port"
	expect_in "$OUT" "no free port on any USB bus of this VM (xhci.0 ports 1,2,3,4,5,6,7,8,9,10,11,12,13,14 are kept" "why"
}

# A Proxmox q35 VM with no usbN: only EHCI/UHCI and the bridges.
PVE_Q35="-readconfig $TOP/tests/pve-q35.cfg -device usb-tablet,id=tablet,bus=ehci.0,port=1"
# shellcheck disable=SC2086
pve_vm_start() { vm_start "$1" $PVE_Q35; }
qom_get() { "$PEEK" "$T/qmp/$1.qmp" run "{\"execute\":\"qom-get\",\"arguments\":{\"path\":\"$2\",\"property\":\"$3\"}}"; }

test_proxmox_vm_without_xhci_gets_proxmox_own_controller_and_every_device() {
	pve_vm_start 100
	conf 100 "3-4"
	us reconcile
	expect_rc 0
	expect_in "$OUT" "xhci            qemu-xhci  Proxmox's USB controller  pci.1 addr 0x1b  ok" "the controller is reported"
	expect_eq "$(usb 100 | cut -d' ' -f1,4,5 | tr '\n' ' ')" \
		"usbhost3-4.1.1 xhci.0 15 usbhost3-4.1.2 xhci.0 14 usbhost3-4.1.4 xhci.0 13 usbhost3-4.4 xhci.0 12 " \
		"every device on Proxmox's xhci"
	expect_eq "$(qom_get 100 /machine/peripheral/xhci type)" '"qemu-xhci"' "driver"
	expect_eq "$(qom_get 100 /machine/peripheral/xhci addr)" "216" "address 0x1b (devfn 27 << 3)"
	expect_eq "$(qom_get 100 /machine/peripheral/xhci p2) $(qom_get 100 /machine/peripheral/xhci p3)" "15 15" "ports"
	expect_eq "$(qom_get 100 /machine/peripheral/xhci parent_bus)" '"/machine/peripheral/pci.1/pci.1"' "on pci.1"
	expect_in "$(history_json)" "qemu-xhci xhci (Proxmox's controller" "history"
	us reconcile
	expect_in "$OUT" "in sync" "second run"
	# A udev run reads only the ids first: the same.  (A controller Proxmox
	# unplugged: test_proxmox_unplugging_its_xhci_gets_it_back_with_the_devices.)
	pve_vm_start 101
	conf 100 ""
	conf 101 "3-4"
	ACTION=add DEVPATH=/devices/pci0000:00/0000:00:14.0/usb3/3-4 us reconcile
	expect_rc 0
	expect_eq "$(usb_ids 101)" "usbhost3-4.1.1 usbhost3-4.1.2 usbhost3-4.1.4 usbhost3-4.4" "udev run"
	expect_eq "$(qom_get 101 /machine/peripheral/xhci addr)" "216" "controller added by a udev run"
}

# What Proxmox does when a VM's last usbN goes: qemu-server device_dels
# its xhci and does not wait.  On q35 the controller sits on pci.1, an ACPI
# hot-plug slot: QEMU only asks the guest, and removes the controller with
# everything on it once the guest's ACPI code ejects the slot (or the VM
# resets).  The test VM's guest is only firmware: qmp-peek guest-eject
# plays the guest's part.
proxmox_unplugs_xhci() {
	qmp_run "$1" '{"execute":"device_del","arguments":{"id":"xhci"}}'
}
peripheral() {
	"$PEEK" "$T/qmp/$1.qmp" run '{"execute":"qom-list","arguments":{"path":"/machine/peripheral"}}' \
		| grep -o '"name": "[^"]*"' | cut -d'"' -f4 | grep -vx type | sort | tr '\n' ' '
}
has_no_xhci() { ! peripheral "$1" | grep -qw xhci; }
expect_blog_on_pve_xhci() {
	expect_in "$OUT" "xhci            qemu-xhci  Proxmox's USB controller  pci.1 addr 0x1b  ok" "$2: the controller is reported"
	expect_eq "$(usb "$1" | cut -d' ' -f1,4,5 | tr '\n' ' ')" \
		"usbhost3-4.1.1 xhci.0 15 usbhost3-4.1.2 xhci.0 14 usbhost3-4.1.4 xhci.0 13 usbhost3-4.4 xhci.0 12 " \
		"$2: every device on Proxmox's xhci"
	expect_eq "$(qom_get "$1" /machine/peripheral/xhci addr)" "216" "$2: address 0x1b"
	expect_eq "$(qom_get "$1" /machine/peripheral/xhci parent_bus)" '"/machine/peripheral/pci.1/pci.1"' "$2: on pci.1"
}

test_proxmox_unplugging_its_xhci_gets_it_back_with_the_devices() {
	pve_vm_start 100
	qmp_run 100 '{"execute":"cont"}' # a running VM (its firmware idles): as on Proxmox
	expect_eq "$(peek_status "$T/qmp/100.qmp")" "running" "runstate"
	conf 100 "3-4"
	tree_without 3-4.4
	us reconcile
	expect_rc 0
	expect_eq "$(usb 100 | cut -d' ' -f1,4,5 | tr '\n' ' ')" \
		"usbhost3-4.1.1 xhci.0 15 usbhost3-4.1.2 xhci.0 14 usbhost3-4.1.4 xhci.0 13 " "first run"
	# usb0 hot-plugged from the GUI (qemu-server reuses the xhci it finds),
	# then removed: the last usbN is gone and Proxmox unplugs its xhci.
	qmp_run 100 '{"execute":"device_add","arguments":{"driver":"usb-host","id":"usb0","bus":"xhci.0","port":"1","hostbus":1,"hostport":"9"}}'
	printf 'usb0: host=1-9\n' > "$T/cfg/100.conf"
	us reconcile
	expect_in "$OUT" "in sync: nothing to do" "with usb0"
	qmp_run 100 '{"execute":"device_del","arguments":{"id":"usb0"}}'
	: > "$T/cfg/100.conf"
	proxmox_unplugs_xhci 100
	# Until the guest lets go, QEMU holds the controller and everything on
	# it and shows the pending unplug nowhere usbsync can read.  usbsync
	# fights nothing; what it adds meanwhile works until the guest lets go.
	us reconcile
	expect_rc 0
	expect_in "$OUT" "in sync: nothing to do" "unplug pending"
	TREE=$TREES/blog.umockdev # the webcam is plugged in
	us reconcile
	expect_rc 0
	expect_eq "$(echo "$OUT" | grep usbhost | tr -s ' ')" "100 add 3-4.4 usbhost3-4.4 046d:0825 C270 HD WEBCAM xhci.0 port 12 ok" \
		"added while the unplug is pending"
	expect_eq "$("$PEEK" "$T/qmp/100.qmp" guest-eject xhci | tr '\n' ' ')" \
		"usbhost3-4.1.1 usbhost3-4.1.2 usbhost3-4.1.4 usbhost3-4.4 " "DEVICE_DELETED for every device on it"
	expect_not_in "$(peripheral 100)" "xhci" "QEMU removed the controller"
	expect_eq "$(usb_ids 100)" "" "and the devices"
	# A udev run for any device of the VM puts back the controller and all.
	ACTION=add DEVPATH=/devices/pci0000:00/0000:00:14.0/usb3/3-4/3-4.1/3-4.1.2 us reconcile
	expect_rc 0
	expect_blog_on_pve_xhci 100 "udev run"
	# Unplugged again, finished this time by a reset before the guest let
	# go (QEMU ejects what is pending); a full run puts it back.
	proxmox_unplugs_xhci 100
	qmp_run 100 '{"execute":"system_reset"}'
	wait_until 3000 has_no_xhci 100 || fail "the reset did not finish the unplug"
	expect_eq "$(usb_ids 100)" "" "after the reset"
	us reconcile
	expect_rc 0
	expect_blog_on_pve_xhci 100 "full run"
	expect_eq "$(history_json | grep -o "qemu-xhci xhci (Proxmox's controller" | wc -l)" "3" "each add in history"
	us reconcile
	expect_rc 0
	expect_in "$OUT" "in sync: nothing to do" "then a no-op"
	expect_eq "$(peek_status "$T/qmp/100.qmp")" "running" "still running"
}

# ctl_added_at: the time of the newest controller add history holds, as
# status prints it (history --json's "time" of that row)
ctl_added_at() {
	history_json --vm "$1" | python3 -c 'import json, sys
rows = [r for r in json.load(sys.stdin) if r["op"] == "add" and r["port"] is None and r["result"] == "ok"]
print(rows[0]["time"] if rows else "")'
}
ctl_json() { echo "$OUT" | python3 -c 'import json, sys; print(json.dumps([v.get("controller_added", "absent") for v in json.load(sys.stdin)["vms"]]))'; }

test_status_says_usbsync_added_proxmox_controller_to_this_qemu_only() {
	pve_vm_start 100
	conf 100 "3-4"
	us status
	expect_in "$OUT" "would add Proxmox's USB controller xhci" "planned"
	expect_not_in "$OUT" "added by usbsync" "not yet added"
	us reconcile
	expect_rc 0
	local at
	at=$(ctl_added_at 100)
	[ -n "$at" ] || fail "history has no controller add"
	us status
	expect_rc 0
	expect_in "$OUT" "  controller xhci (qemu-xhci on pci.1 addr 0x1b): added by usbsync at $at" "status says who added it"
	expect_not_in "$OUT" "would add Proxmox's USB controller" "no longer planned"
	us status --json
	expect_in "$(ctl_json)" '[{"id": "xhci", "driver": "qemu-xhci", "bus": "pci.1", "addr": "0x1b", "time_ms": ' "json"
	expect_in "$(ctl_json)" "\"time\": \"$at\"}]" "json time"
	us reconcile --json
	expect_eq "$(ctl_json)" '["absent"]' "reconcile does not ask"

	# The same VM restarted (same name, same socket) with Proxmox's xhci on
	# its command line: history's add was to the QEMU before.
	vm_stop 100
	vm_start 100 -readconfig "$TOP/tests/pve-q35.cfg" -device qemu-xhci,p2=15,p3=15,id=xhci,bus=pci.1,addr=0x1b
	us status
	expect_rc 0
	expect_in "$OUT" "vm 100: running" "restarted"
	expect_not_in "$OUT" "added by usbsync" "Proxmox's own controller"
	us status --json
	expect_eq "$(ctl_json)" '[null]' "json: not usbsync's"
	# Even when the socket's time says otherwise (a clock stepped back),
	# QEMU knows the controller came with it.
	touch -d "@$(( $(date +%s) - 3600 ))" "$T/qmp/100.qmp"
	us status
	expect_not_in "$OUT" "added by usbsync" "on the command line"

	# Restarted without one, and Proxmox hot-adds its own (a usbN
	# hot-plugged): hot-plugged, but not by usbsync.
	vm_stop 100
	pve_vm_start 100
	qmp_run 100 '{"execute":"device_add","arguments":{"driver":"qemu-xhci","id":"xhci","p2":15,"p3":15,"bus":"pci.1","addr":"0x1b"}}'
	us status
	expect_rc 0
	expect_not_in "$OUT" "added by usbsync" "Proxmox hot-added it"

	# Without history, status says nothing about it and warns of nothing.
	rm -rf "$T/db"
	us status --json
	expect_eq "$(ctl_json)" '[null]' "no history"
	expect_eq "$ERR" "" "no warning"
}

test_controller_none_or_plain_qemu_keeps_the_ehci_behaviour() {
	pve_vm_start 100
	conf 100 "controller none
3-4"
	us reconcile
	expect_rc 0
	expect_eq "$(usb 100 | cut -d' ' -f1,4 | sed 's/ehci-2.0/ehci.0/' | tr '\n' ' ')" \
		"usbhost3-4.1.1 ehci.0 usbhost3-4.1.2 ehci.0 usbhost3-4.1.4 ehci.0 usbhost3-4.4 ehci.0 " \
		"every speed on the EHCI buses (their UHCI companions take the slow ones)"
	expect_not_in "$(usb_ids 100)" "xhci" "no controller"
	"$PEEK" "$T/qmp/100.qmp" run '{"execute":"qom-get","arguments":{"path":"/machine/peripheral/xhci","property":"type"}}' \
		> /dev/null 2>&1 && fail "controller none: an xhci was added"
	vm_start 101 -device ich9-usb-ehci1,id=ehci
	conf 101 "1-1"
	us reconcile --vm 101
	expect_rc 1
	expect_in "$OUT" "no USB controller with an id that fits" "plain QEMU: today's message"
}

# buses_of VM: its usb-host devices, each "id bus port "
buses_of() { usb "$1" | cut -d' ' -f1,4,5 | tr '\n' ' '; }
SLOW="controller none
3-4.1.1
3-4.1.2"

# The UHCI companions that let an EHCI bus take full and low speed are
# seen however the VM is read: here through QOM (`info qtree` refused),
# below through qom-list-get (QEMU 10.1).
test_controller_none_puts_slow_devices_on_ehci_companions_read_through_qom() {
	vm_proxied 100 "$PVE_Q35" error-on human-monitor-command CommandNotFound \
		"The command human-monitor-command has not been found"
	conf 100 "$SLOW"
	us reconcile --stats
	expect_rc 0
	expect_eq "$(stat_of qmp_fallbacks)" 1 "read through QOM"
	expect_eq "$(buses_of 100)" "usbhost3-4.1.1 ehci.0 6 usbhost3-4.1.2 ehci.0 5 " \
		"full and low speed on ehci.0, from the top port down"
	us reconcile
	expect_in "$OUT" "in sync" "second run"
}

# on_node2 CMD...: run with node pve2's dirs (its own config and QMP dirs)
on_node2() { USBSYNC_NODE=pve2 USBSYNC_QMP_DIR=$T/node2/qmp USBSYNC_CONFIG_DIR=$T/node2/cfg "$@"; }
peek_status() { "$PEEK" "$1" run '{"execute":"query-status"}' | sed 's/.*"status": "\([a-z-]*\)".*/\1/'; }

test_live_migration_target_gets_the_published_set_then_its_own() {
	mkdir -p "$T/state" "$T/node2/qmp" "$T/node2/cfg"
	chmod 700 "$T/node2/cfg"
	export USBSYNC_STATE_DIR=$T/state
	vm_start 100 -device qemu-xhci,p2=15,p3=15,id=xhci
	conf 100 "3-4"
	USBSYNC_NODE=pve1 us reconcile
	expect_rc 0
	expect_in "$(cat "$T/state/100.json")" '"node":"pve1"' "published"
	expect_in "$(cat "$T/state/100.json")" '"id":"usbhost3-4.1.1","bus":"xhci.0","port":15,"hostbus":3,"hostport":"4.1.1"' "device"
	local before
	before=$(stat -c '%i %Y' "$T/state/100.json")
	USBSYNC_NODE=pve1 us reconcile
	ACTION=add DEVPATH=/devices/pci0000:00/0000:00:14.0/usb3/3-4 USBSYNC_NODE=pve1 us reconcile --stats
	expect_in "$ERR" "qmp_commands=2 " "a no-op udev run still asks one command"
	expect_eq "$(stat -c '%i %Y' "$T/state/100.json")" "$before" "a no-op run writes nothing"

	# The target node starts the VM from Proxmox's config (no usb-host)
	# and runs the hookscript while QEMU waits for the stream.
	qemu_paused "$T/node2/qmp/100.qmp" "$T/target.pid" -device qemu-xhci,p2=15,p3=15,id=xhci \
		-incoming "unix:$T/mig.sock" || fail "target did not start"
	VMPIDS="$VMPIDS $(cat "$T/target.pid")"
	conf 100 "3-4.4" # what pve2 would want; must not matter yet
	cp "$T/cfg/100.usb.conf" "$T/node2/cfg/"
	PVE_MIGRATED_FROM=pve1 on_node2 us hook 100 post-start
	expect_rc 0
	expect_eq "$("$PEEK" "$T/node2/qmp/100.qmp" usb | tr '\n' ' ')" \
		"usbhost3-4.1.1 3 0 xhci.0 15 usbhost3-4.1.2 3 0 xhci.0 14 usbhost3-4.1.4 3 0 xhci.0 13 usbhost3-4.4 3 0 xhci.0 12 " \
		"the published set, at host port 0"
	expect_in "$(history_json --limit 1)" '"trigger":"hook"' "the copies are in history"
	on_node2 us reconcile --all
	expect_rc 0
	expect_in "$OUT" "vm 100: migrating (runstate inmigrate): left as it is" "a sweep leaves the incoming VM alone"
	on_node2 us status
	expect_in "$OUT" "vm 100: migrating (runstate inmigrate)" "status shows the runstate"

	"$PEEK" "$T/qmp/100.qmp" run "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"unix:$T/mig.sock\"}}" > /dev/null \
		|| fail "migrate refused"
	migrated() { "$PEEK" "$T/qmp/100.qmp" run '{"execute":"query-migrate"}' | grep -q '"status": "completed"'; }
	wait_until 20000 migrated || fail "migration: $("$PEEK" "$T/qmp/100.qmp" run '{"execute":"query-migrate"}')"
	kill -0 "$(cat "$T/target.pid")" || fail "target died"
	expect_eq "$(peek_status "$T/node2/qmp/100.qmp")" "prelaunch" "target has the VM (not started, as the source was not)"
	expect_eq "$(peek_status "$T/qmp/100.qmp")" "postmigrate" "source handed over"

	# The source must not touch or republish the VM any more.
	conf 100 "1-1"
	USBSYNC_NODE=pve1 us reconcile
	expect_rc 0
	expect_in "$OUT" "migrating (runstate postmigrate)" "source left alone"
	expect_in "$(cat "$T/state/100.json")" '"node":"pve1"' "nothing published by the source"

	# The target's own sweep replaces the copies with what pve2 wants.
	on_node2 us reconcile --all
	expect_rc 0
	expect_eq "$("$PEEK" "$T/node2/qmp/100.qmp" usb | cut -d' ' -f1-3)" "usbhost3-4.4 3 4.4" "pve2's own set"
	expect_in "$(cat "$T/state/100.json")" '"node":"pve2"' "published by the new node"
}

test_status_counts_the_controller_the_migration_hook_added() {
	mkdir -p "$T/state" "$T/node2/qmp" "$T/node2/cfg"
	chmod 700 "$T/node2/cfg"
	export USBSYNC_STATE_DIR=$T/state
	pve_vm_start 100
	conf 100 "3-4"
	USBSYNC_NODE=pve1 us reconcile
	expect_rc 0
	expect_in "$(cat "$T/state/100.json")" '"controller"' "Proxmox's controller is published"
	# The target, a Proxmox VM without usbN, waits for the stream; node
	# pve2 keeps its own history.
	qemu_paused "$T/node2/qmp/100.qmp" "$T/target.pid" -readconfig "$TOP/tests/pve-q35.cfg" \
		-device usb-tablet,id=tablet,bus=ehci.0,port=1 -incoming "unix:$T/mig.sock" || fail "target did not start"
	VMPIDS="$VMPIDS $(cat "$T/target.pid")"
	cp "$T/cfg/100.usb.conf" "$T/node2/cfg/"
	PVE_MIGRATED_FROM=pve1 USBSYNC_DB=$T/node2/db/history.db on_node2 us hook 100 post-start
	expect_rc 0
	expect_in "$OUT" "vm 100: added qemu-xhci xhci on pci.1" "the hook adds the controller"
	local at
	at=$(USBSYNC_DB=$T/node2/db/history.db ctl_added_at 100)
	[ -n "$at" ] || fail "pve2's history has no controller add"
	"$PEEK" "$T/qmp/100.qmp" run "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"unix:$T/mig.sock\"}}" > /dev/null \
		|| fail "migrate refused"
	migrated() { "$PEEK" "$T/qmp/100.qmp" run '{"execute":"query-migrate"}' | grep -q '"status": "completed"'; }
	wait_until 20000 migrated || fail "migration: $("$PEEK" "$T/qmp/100.qmp" run '{"execute":"query-migrate"}')"
	expect_eq "$(peek_status "$T/node2/qmp/100.qmp")" "prelaunch" "the target has the VM"
	USBSYNC_DB=$T/node2/db/history.db on_node2 us status
	expect_in "$OUT" "  controller xhci (qemu-xhci on pci.1 addr 0x1b): added by usbsync at $at" "the hook's add counts"
}

test_bad_state_files_and_dirs_never_keep_devices_from_vms() {
	vm_start 100
	conf 100 "3-4.4"
	export USBSYNC_STATE_DIR=$T/state USBSYNC_NODE=pve1
	mkdir -p "$T/state"
	printf '{"version":1,"vm":"100","node":"pve1","time":1,"controller":false,"devices":[{"driver":"usb-host","id":"usbhost3-4","bus":"xhci.0,id=evil","port":1,"hostbus":3,"hostport":"4"}]}' \
		> "$T/state/100.json"
	us reconcile
	expect_rc 0
	expect_in "$ERR" "published state ignored" "a corrupt file is named"
	expect_eq "$(usb_ids 100)" "usbhost3-4.4" "devices reconciled"
	expect_in "$(cat "$T/state/100.json")" '"id":"usbhost3-4.4"' "and replaced by a good publication"
	# A target given a corrupt publication adds nothing.
	printf 'garbage' > "$T/state/101.json"
	vm_start 101 -device qemu-xhci,id=xhci -incoming "unix:$T/mig.sock"
	PVE_MIGRATED_FROM=pve9 us hook 101 post-start
	expect_rc 0
	expect_in "$ERR" "101.json" "named"
	expect_eq "$(usb_ids 101)" "" "nothing added"
	# A state dir that cannot be written: a warning, devices still reconciled.
	: > "$T/notadir"
	conf 100 "3-4.1"
	USBSYNC_STATE_DIR=$T/notadir us reconcile
	expect_rc 0
	expect_in "$ERR" "warning" "warned"
	expect_eq "$(usb_ids 100)" "usbhost3-4.1.1 usbhost3-4.1.2 usbhost3-4.1.4" "devices reconciled"
}

test_mapping_names_a_port_per_node() {
	vm_start 100 -device qemu-xhci,p2=15,p3=15,id=xhci
	mkdir -p "$T/mapping"
	printf 'front\n\tdescription the front hub\n\tmap id=05e3:0608,node=pve1,path=3-4.1\n\tmap id=046d:0825,node=pve2,path=3-4.4\n\nkbd\n\tmap id=046d:c52b,node=pve1\n' \
		> "$T/mapping/usb.cfg"
	export USBSYNC_MAPPING_FILE=$T/mapping/usb.cfg
	conf 100 "mapping front"
	us reconcile --node pve2
	expect_rc 0
	expect_eq "$(usb_ids 100)" "usbhost3-4.4" "pve2's entry"
	us tree --node pve1
	expect_in "$OUT" "3-4.1.2" "tree"
	expect_eq "$(grep -c 'vm 100' "$T/out")" "3" "on pve1 the mapping is 3-4.1"
	USBSYNC_NODE=pve1 us reconcile --all
	expect_rc 0
	expect_eq "$(usb_ids 100)" "usbhost3-4.1.1 usbhost3-4.1.2 usbhost3-4.1.4" "pve1's entry"
	conf 100 "mapping kbd"
	us reconcile --node pve2
	expect_rc 2
	expect_in "$ERR" "mapping 'kbd' has no entry for node 'pve2'" "no entry for this node"
	expect_eq "$(usb_ids 100)" "usbhost3-4.1.1 usbhost3-4.1.2 usbhost3-4.1.4" "left alone"
	us reconcile --node bad.name
	expect_rc 2
}

test_adds_retry_a_lower_port_when_qemu_placed_a_device_itself() {
	# Devices added without port= report no port: fill ports 1-3 that way,
	# then free 1 and 2, so the top port looks free but is not.
	vm_start 100 -device qemu-xhci,id=xhci,p2=3,p3=3
	local d
	for d in usb-tablet usb-kbd usb-mouse; do
		qmp_run 100 '{"execute":"device_add","arguments":{"driver":"'$d'","id":"'$d'","bus":"xhci.0"}}'
	done
	qmp_run 100 '{"execute":"device_del","arguments":{"id":"usb-tablet"}}' \
		'{"execute":"device_del","arguments":{"id":"usb-kbd"}}'
	conf 100 "3-4.4"
	us reconcile
	expect_rc 0
	expect_eq "$(usb 100)" "usbhost3-4.4 3 4.4 xhci.0 2" "added on the next free port down"
	expect_in "$OUT" "xhci.0 port 2" "report says where it landed"
	# and when every port is taken, the failure names the device
	conf 100 $'3-4.4\n3-4.1'
	us reconcile
	expect_rc 1
	expect_in "$OUT" "usbhost3-4.1.1" "failure names the device"
}

test_vm_without_usb_controller_is_told_what_to_add() {
	vm_start 100 -device virtio-rng-pci
	conf 100 "3-4.4"
	us reconcile
	expect_rc 1
	expect_in "$OUT" "qemu-xhci" "advice"
}

test_hook_post_start_reconciles_that_vm_only() {
	vm_start 100
	vm_start 101
	conf 100 "3-4.4"
	conf 101 "1-1"
	us hook 100 pre-start; expect_rc 0
	expect_eq "$(usb_ids 100)" "" "pre-start does nothing"
	us hook 100 post-start
	expect_rc 0
	expect_eq "$(usb_ids 100)" "usbhost3-4.4" "post-start attaches"
	expect_eq "$(usb_ids 101)" "" "other vm untouched"
	expect_in "$(history_json)" '"trigger":"hook"' "trigger"
}

test_unwritable_history_still_reconciles() {
	vm_start 100
	conf 100 "3-4.4"
	mkdir -p "$T/db"
	printf 'this is not a database, and it must survive' > "$T/db/history.db"
	us reconcile
	expect_rc 0
	expect_eq "$(usb_ids 100)" "usbhost3-4.4" "reconciled anyway"
	expect_in "$ERR" "warning: history" "warning"
	expect_eq "$(cat "$T/db/history.db")" "this is not a database, and it must survive" "file untouched"
}

# libsqlite3 is loaded only by a run that records something: a broken one
# on the library path is never noticed by a no-op run, and a run that
# changes devices changes them anyway, with a warning.
test_history_library_is_loaded_only_by_a_run_that_records() {
	vm_start 100
	conf 100 "3-4.4"
	us reconcile
	expect_rc 0
	mkdir -p "$T/lib"
	: > "$T/lib/libsqlite3.so.0"
	export LD_LIBRARY_PATH=$T/lib
	us reconcile
	expect_rc 0
	expect_eq "$ERR" "" "a no-op run does not load the library"
	conf 100 "3-4.1"
	us reconcile
	expect_rc 0
	expect_eq "$(usb_ids 100)" "usbhost3-4.1.1 usbhost3-4.1.2 usbhost3-4.1.4" "reconciled anyway"
	expect_in "$ERR" "cannot load libsqlite3.so.0" "the warning names the library"
	unset LD_LIBRARY_PATH
	us history --json
	expect_rc 0
	expect_not_in "$OUT" '"port":"3-4.1.1"' "the unrecorded run left no row"
}

test_hostile_device_strings_are_escaped_and_json_stays_valid() {
	TREE=$TREES/hostile.umockdev
	vm_start 100
	conf 100 "5-1"
	us reconcile --dry-run
	expect_rc 0
	expect_in "$OUT" 'Evil \"quoted\" back\\slash\nline2 \x1b[31mRED' "escaped"
	case "$OUT" in *$'\x1b'*) fail "raw escape reached the terminal" ;; esac
	us status --json
	echo "$OUT" | python3 -c 'import json,sys; json.load(sys.stdin)' || fail "status --json is not JSON: $OUT"
	us reconcile
	history_json | python3 -c 'import json,sys; r=json.load(sys.stdin); assert r[0]["product"].startswith("Evil \"quoted\"")' \
		|| fail "history json"
}

test_status_shows_each_state() {
	vm_start 100
	conf 100 $'3-4.1\nexclude port 3-4.1.4'
	us reconcile; expect_rc 0
	qmp_run 100 '{"execute":"device_add","arguments":{"driver":"usb-host","id":"usbhost9-9","bus":"xhci.0","port":"1","hostbus":9,"hostport":"9"}}'
	us status
	expect_rc 0
	expect_in "$OUT" "vm 100: running, 1 change pending" "summary"
	expect_in "$OUT" "attached" "attached"
	expect_in "$OUT" "would remove: device unplugged" "stale"
	us status --json
	expect_in "$OUT" '"state":"stale"' "json stale"
}

test_bad_global_options_and_env_are_usage_errors() {
	USBSYNC_TIMEOUT=abc us reconcile; expect_rc 2
	us --timeout 0 reconcile; expect_rc 2
	us reconcile --vm '../etc'; expect_rc 2
	us frobnicate; expect_rc 2
	us reconcile --config-dir "$T/nonexistent"; expect_rc 2
	expect_in "$ERR" "$T/nonexistent" "names the dir"
}

test_burst_of_40_udev_runs_converges_once_without_duplicates() {
	vm_start 100
	conf 100 "3-4"
	# 40 invocations started at once, as udev does for a hub full of devices
	cat > "$T/burst.sh" <<-EOF
	for i in \$(seq 40); do
		ACTION=add DEVPATH=/devices/pci0000:00/0000:00:14.0/usb3/3-4/3-4.1 \\
			"$BIN" reconcile > "$T/burst.\$i.out" 2>&1 &
	done
	wait
	EOF
	umockdev-run -d "$TREE" -- bash "$T/burst.sh"
	expect_eq "$(usb_ids 100)" "usbhost3-4.1.1 usbhost3-4.1.2 usbhost3-4.1.4 usbhost3-4.4" "devices"
	local all ran
	all=$(cat "$T"/burst.*.out)
	expect_not_in "$all" "Duplicate" "no duplicate ids"
	expect_not_in "$all" "failed" "no failures"
	ran=$(grep -L coalesced "$T"/burst.*.out | wc -l)
	echo "    $ran of 40 runs talked to QEMU"
	[ "$ran" -le 3 ] || fail "$ran runs talked to QEMU"
	local h
	h=$(history_json)
	expect_eq "$(echo "$h" | grep -o '"op":"add"' | wc -l)" "4" "history: four adds"
	expect_not_in "$h" '"result":"failed"' "history: no failures"
}

touched() { [ "$(stat -c %Y "$1")" != 0 ]; }

test_a_queued_run_waits_out_a_burst_but_a_lone_run_does_not() {
	vm_start 100
	conf 100 "3-4.4"
	us reconcile
	expect_rc 0
	# a lone run created wait.lock looking untouched: it did not wait
	expect_eq "$(stat -c %Y "$T/run/wait.lock")" "0" "a new wait.lock reads as never touched"
	# runs keep coalescing (touching wait.lock as they do) all the while
	# ours starts (umockdev-run can take seconds on a loaded machine): it
	# waits until 100 ms after the last of them, or 1 s.  One process
	# touches, since a loaded machine can leave 100 ms between forks.
	python3 -c 'import os, sys, time
for _ in range(2000):
	os.utime(sys.argv[1])
	time.sleep(0.01)' "$T/run/wait.lock" &
	local toucher=$! ms
	wait_until 3000 touched "$T/run/wait.lock" || fail "wait.lock never touched"
	us reconcile --stats
	kill $toucher; wait $toucher 2>/dev/null
	expect_rc 0
	kill $toucher; wait $toucher 2>/dev/null
	ms=$(echo "$ERR" | grep -o 'ms_total=[0-9]*' | cut -d= -f2)
	[ -n "$ms" ] && [ "$ms" -ge 150 ] || fail "waited only ${ms:-?} ms while runs coalesced"
}

# The udev path's lock: a lone event must never wait for a burst that is
# not there, even right after another run or long after a burst.
test_a_lone_udev_run_never_waits_to_settle() {
	vm_start 100
	conf 100 "3-4.4"
	us reconcile
	expect_rc 0
	local i ms best=999999
	export ACTION=add DEVPATH=/devices/pci0000:00/0000:00:14.0/usb3/3-4/3-4.4
	for i in 1 2 3; do
		# a burst ended 0.5 s ago (it touched wait.lock on its way out)
		touch -d "@$(( $(date +%s) - 1 )).5" "$T/run/wait.lock"
		us reconcile --stats
		expect_rc 0
		expect_in "$OUT" "in sync" "a lone run is not coalesced away"
		ms=$(echo "$ERR" | grep -o 'ms_total=[0-9]*' | cut -d= -f2)
		[ "$ms" -lt "$best" ] && best=$ms
	done
	# a run that settled would take at least 100 ms
	[ "$best" -lt $(( 60 * ${IT_TIME_SCALE:-1} )) ] || fail "a lone udev run took $best ms at best"
}

test_a_run_waits_for_the_one_before_it_within_a_bound() {
	vm_start 100
	conf 100 "3-4.4"
	mkdir -p "$T/run" && chmod 700 "$T/run"
	# held until killed (umockdev-run alone can take seconds to start on a
	# loaded machine); the sleep holds the lock with flock, so both go
	flock "$T/run/run.lock" sh -c 'echo $$ > "$0.tmp" && mv "$0.tmp" "$0" && exec sleep 60' "$T/held" &
	local holder=$!
	VMPIDS="$VMPIDS $holder"
	wait_until 3000 test -s "$T/held" || fail "flock did not take run.lock"
	VMPIDS="$VMPIDS $(cat "$T/held")"
	USBSYNC_LOCK_WAIT=0.5 us reconcile
	expect_rc 1
	expect_in "$ERR" "run.lock" "names the lock"
	expect_eq "$(usb_ids 100)" "" "changed nothing"
	kill "$(cat "$T/held")" $holder; wait $holder 2>/dev/null
	us reconcile
	expect_rc 0
	expect_eq "$(usb_ids 100)" "usbhost3-4.4" "then it runs"
}

test_all_sweeps_vms_whose_config_is_gone() {
	vm_start 100
	vm_start 101
	conf 100 "3-4.4"
	conf 101 "1-1"
	us reconcile; expect_rc 0
	rm "$T/cfg/101.usb.conf"
	us reconcile
	expect_eq "$(usb_ids 101)" "usbhost1-1" "without --all, a VM without config is not visited"
	us reconcile --trigger timer --all
	expect_rc 0
	expect_eq "$(usb_ids 101)" "" "swept"
	expect_eq "$(usb_ids 100)" "usbhost3-4.4" "configured VM kept"
}

test_tree_shows_the_hub_tree_and_who_gets_each_device() {
	conf 100 $'port 3-4\nexclude port 3-4.1.4'
	conf 101 "device 046d:0825"
	us tree
	expect_rc 0
	expect_in "$OUT" "connector 3-4 = 4-4" "connector header: the port and its peer"
	expect_in "$OUT" "  3-4                4-4   05e3:0608  480M   USB2.0 Hub" "the port's peer on its line"
	expect_in "$OUT" "    3-4.1            -     05e3:0608  480M   USB2.0 Hub" "hub indented under its parent"
	expect_in "$OUT" "      3-4.1.2        -     04d9:0169  1.5M   USB Keyboard    Holtek Semiconductor, Inc.  -                     vm 100" "claimed device"
	expect_in "$OUT" "excluded" "exclude"
	expect_in "$OUT" "conflict: 100, 101" "conflict"
	expect_in "$OUT" "  1-2                -     0bda:0129  480M   USB2.0-CRW      Generic                     20100201396000000     host" "host device, with its serial"
	expect_in "$OUT" "3-4 = 4-4      hotplug    removable  front panel, left, upper  yes" "where the connector is"
	expect_in "$OUT" "1-2 (no peer)  hardwired  fixed" "a port without a peer"
	us tree --json
	echo "$OUT" | python3 -c '
import json, sys
t = {d["port"]: d for d in json.load(sys.stdin)}
assert t["3-4.1.1"]["claim"] == "vm 100", t["3-4.1.1"]
assert t["3-4"]["claim"] == "hub" and t["3-4"]["hub"]
assert t["3-4.4"]["claim"] == "conflict: 100, 101"
assert t["3-4.1.2"]["speed"] == "1.5M" and t["3-4.1.2"]["depth"] == 3
assert t["3-4"]["peer"] == "4-4" and t["3-4.1.4"]["connector"] == ["3-4", "4-4"]
assert t["3-4"]["where"]["panel"] == "front" and t["3-4"]["where"]["connect_type"] == "hotplug"
assert t["3-4.1.4"]["serial"] == "4C530001131004116433" and t["1-1"]["serial"] is None
assert t["1-2"]["connector"] == ["1-2"] and t["1-2"]["peer"] is None
' || fail "tree --json: $OUT"
	TREE=$TREES/hostile.umockdev
	us tree
	case "$OUT" in *$'\x1b'*) fail "raw escape in tree output" ;; esac
	expect_in "$OUT" 'Evil \"quoted\"' "escaped product"
}

test_history_prune_keeps_recent_runs_and_drops_old_ones() {
	vm_start 100
	conf 100 "3-4.4"
	us reconcile; expect_rc 0
	"$BIN" history --prune-older-than 1d > "$T/p" || fail "prune failed"
	expect_eq "$(cat "$T/p")" "pruned 0 runs" "recent runs kept"
	expect_in "$(history_json)" '"op":"add"' "still there"
	sleep 0.01
	us reconcile --trigger timer --prune-older-than 0s
	expect_rc 0
	expect_eq "$(history_json | tr -d '\n')" "[]" "pruned by the timer run"
	"$BIN" history --prune-older-than soon 2>> "$T/quiet.err" && fail "bad span accepted"
	# the timer passes it every minute: the next hour's no-op runs do not
	# even load libsqlite3 for it
	mkdir -p "$T/lib"
	: > "$T/lib/libsqlite3.so.0"
	LD_LIBRARY_PATH=$T/lib us reconcile --trigger timer --prune-older-than 0s
	expect_rc 0
	expect_eq "$ERR" "" "no pruning within the hour"
	return 0
}

test_history_before_anything_was_recorded_is_empty_not_an_error() {
	vm_start 100
	conf 100 "9-9"
	us reconcile
	expect_rc 0
	[ -e "$T/db/history.db" ] && fail "a run with nothing to record created the database"
	us history
	expect_rc 0
	expect_in "$OUT" "no history rows match" "empty"
	expect_in "$OUT" "last run: " "the no-op run's time"
	us history --json
	expect_eq "$OUT" "[]" "empty JSON"
	"$BIN" --db "$T/nowhere/history.db" history > /dev/null 2>> "$T/quiet.err" &&
		fail "a wrong --db directory passed"
	return 0
}

test_watch_follows_hotplug_and_vm_starts_and_stops_on_sigterm() {
	vm_start 100 -device qemu-xhci,id=xhci,p2=15,p3=15
	conf 100 "3-4"
	conf 101 "1-1"
	mkfifo "$T/ctl"
	umockdev-wrapper "$DRIVER" "$TREE" -- "$BIN" watch --sweep 3600 < "$T/ctl" > "$T/watch.out" 2>&1 &
	local drv=$!
	exec 3> "$T/ctl"
	wait_until 30000 has_ids 100 "usbhost3-4.1.1 usbhost3-4.1.2 usbhost3-4.1.4 usbhost3-4.4" \
		|| fail "initial sweep: $(usb_ids 100); $(cat "$T/watch.out")"
	echo "add $TREES/hotplug-3-4.2.umockdev" >&3
	wait_until 2000 has_ids 100 "usbhost3-4.1.1 usbhost3-4.1.2 usbhost3-4.1.4 usbhost3-4.2 usbhost3-4.4" \
		|| fail "hotplugged device not attached within 2 s: $(usb_ids 100)"
	echo "remove /sys/devices/pci0000:00/0000:00:14.0/usb3/3-4/3-4.1/3-4.1.4" >&3
	wait_until 2000 has_ids 100 "usbhost3-4.1.1 usbhost3-4.1.2 usbhost3-4.2 usbhost3-4.4" \
		|| fail "unplugged device not removed within 2 s: $(usb_ids 100); $(cat "$T/watch.out")"
	vm_start 101
	wait_until 1000 has_ids 101 "usbhost1-1" || fail "starting vm not reconciled within 1 s"
	exec 3>&-
	wait $drv
	local rc=$?
	[ $rc -eq 0 ] || fail "watch exited $rc after SIGTERM: $(cat "$T/watch.out")"
	expect_in "$(history_json)" '"trigger":"watch"' "vm start recorded"
	expect_in "$(history_json)" '"trigger":"udev","action":"remove"' "device event recorded"
}

# Runs watch made: each prints its table or "in sync" on stdout.
watch_runs() { grep -c '^VM \|^in sync' "$T/watch.out"; }

test_watch_handles_a_lone_plug_at_once_without_waiting_for_a_debounce() {
	vm_start 100 -device qemu-xhci,id=xhci,p2=15,p3=15
	conf 100 "3-4"
	mkfifo "$T/ctl"
	# a debounce far longer than the wait below (even 3x scaled): only
	# acting on the first event of a quiet period at once can pass
	umockdev-wrapper "$DRIVER" "$TREE" -- "$BIN" watch --debounce 60000 --sweep 3600 \
		< "$T/ctl" > "$T/watch.out" 2>&1 &
	local drv=$!
	exec 3> "$T/ctl"
	wait_until 30000 has_ids 100 "usbhost3-4.1.1 usbhost3-4.1.2 usbhost3-4.1.4 usbhost3-4.4" \
		|| fail "initial sweep: $(usb_ids 100); $(cat "$T/watch.out")"
	sleep 0.3
	local before
	before=$(watch_runs)
	echo "add $TREES/hotplug-3-4.2.umockdev" >&3
	wait_until 2000 has_ids 100 "usbhost3-4.1.1 usbhost3-4.1.2 usbhost3-4.1.4 usbhost3-4.2 usbhost3-4.4" \
		|| fail "a lone plug waited for the debounce: $(usb_ids 100)"
	expect_eq "$(( $(watch_runs) - before ))" "1" "runs for a lone plug"
	exec 3>&-
	wait $drv
}

# The kernel sends "remove" before sysfs lets go of the device, and watch
# acts on a lone event at once: it must wait while the device is still
# there, or the device stays in the VM until the next sweep.
test_watch_removes_a_device_whose_removal_sysfs_finishes_late() {
	vm_start 100 -device qemu-xhci,id=xhci,p2=15,p3=15
	conf 100 "3-4"
	mkfifo "$T/ctl"
	umockdev-wrapper "$DRIVER" "$TREE" -- "$BIN" watch --debounce 0 --sweep 3600 \
		< "$T/ctl" > "$T/watch.out" 2>&1 &
	local drv=$!
	exec 3> "$T/ctl"
	wait_until 30000 has_ids 100 "usbhost3-4.1.1 usbhost3-4.1.2 usbhost3-4.1.4 usbhost3-4.4" \
		|| fail "initial sweep"
	printf '%s\n' "announce /sys/devices/pci0000:00/0000:00:14.0/usb3/3-4/3-4.4" "sleep 300" \
		"drop /sys/devices/pci0000:00/0000:00:14.0/usb3/3-4/3-4.4" >&3
	wait_until 3000 has_ids 100 "usbhost3-4.1.1 usbhost3-4.1.2 usbhost3-4.1.4" \
		|| fail "a device removed 300 ms after its event stayed: $(usb_ids 100); $(cat "$T/watch.out")"
	exec 3>&-
	wait $drv
}

test_watch_coalesces_a_burst_of_40_events_into_at_most_3_runs() {
	vm_start 100 -device qemu-xhci,id=xhci,p2=15,p3=15
	conf 100 "3-4"
	mkfifo "$T/ctl"
	umockdev-wrapper "$DRIVER" "$TREE" -- "$BIN" watch --sweep 3600 \
		< "$T/ctl" > "$T/watch.out" 2>&1 &
	local drv=$!
	exec 3> "$T/ctl"
	wait_until 30000 has_ids 100 "usbhost3-4.1.1 usbhost3-4.1.2 usbhost3-4.1.4 usbhost3-4.4" \
		|| fail "initial sweep"
	sleep 0.3
	local before runs acks t0
	before=$(watch_runs)
	acks=$(grep -c '^ok$' "$T/watch.out")
	t0=$(date +%s%N)
	# a device is plugged, and then announced 40 times more at once (a
	# flaky hub re-enumerating)
	printf '%s\n' "add $TREES/hotplug-3-4.2.umockdev" \
		"uevent 40 /sys/devices/pci0000:00/0000:00:14.0/usb3/3-4/3-4.2" >&3
	# the driver acknowledges each command once its events are sent
	wait_until 30000 eval '[ "$(grep -c "^ok$" "$T/watch.out")" -ge $((acks + 2)) ]' \
		|| fail "the driver did not send the burst: $(grep -v "^ok$" "$T/watch.out")"
	echo "    41 events sent in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
	wait_until 5000 has_ids 100 "usbhost3-4.1.1 usbhost3-4.1.2 usbhost3-4.1.4 usbhost3-4.2 usbhost3-4.4" \
		|| fail "the burst's last plug not attached: $(usb_ids 100)"
	sleep 1.5 # the trailing window and its cap are over
	runs=$(( $(watch_runs) - before ))
	echo "    $runs runs for 41 events"
	[ "$runs" -ge 1 ] && [ "$runs" -le 3 ] || fail "$runs runs for one burst: $(cat "$T/watch.out")"
	expect_eq "$(usb_ids 100)" "usbhost3-4.1.1 usbhost3-4.1.2 usbhost3-4.1.4 usbhost3-4.2 usbhost3-4.4" \
		"converged on the last event ($(cat "$T/watch.out"))"
	exec 3>&-
	wait $drv
}

# The hookscript as make install lays it, pointed at this build's binary.
hookscript() {
	make -s -C "$TOP" BUILD="$(dirname "$BIN")" SBINDIR="$(dirname "$BIN")" \
		"$(dirname "$BIN")/dist/usbsync-hookscript" >/dev/null || fail "building the hookscript"
	echo "$(dirname "$BIN")/dist/usbsync-hookscript"
}

# hs_run ARGS...: the hookscript under the fake tree, output in $T/out (and
# kept in $T/hook.log for the sanitizer check)
hs_run() {
	umockdev-run -d "$TREE" -- "$HS" "$@" > "$T/out" 2>&1
	local rc=$?
	cat "$T/out" >> "$T/hook.log"
	return $rc
}

test_hookscript_chains_another_hook_and_never_fails_a_vm_start() {
	HS=$(hookscript)
	vm_start 100
	conf 100 "3-4.4"
	printf '#!/bin/sh\necho "$@" >> %s/chain.log\n[ "$2" != pre-start ] || exit 7\n' "$T" > "$T/chain"
	chmod +x "$T/chain"
	printf 'USBSYNC_CHAIN_HOOK=%s/chain\n' "$T" > "$T/defaults"
	export USBSYNC_DEFAULTS=$T/defaults
	hs_run 100 post-start
	expect_eq "$?" "0" "post-start"
	expect_eq "$(usb_ids 100)" "usbhost3-4.4" "post-start attached the device"
	hs_run 100 pre-start
	expect_eq "$?" "7" "the chained hook's failure is kept"
	expect_eq "$(cat "$T/chain.log")" "100 post-start
100 pre-start" "chained hook got the same arguments"
	# a usbsync failure (here a config error) never fails the hook...
	conf 100 "bogus line"
	hs_run 100 post-start
	expect_eq "$?" "0" "usbsync failure ignored"
	expect_in "$(cat "$T/out")" "100.usb.conf:1" "but reported"
	# ...unless asked to
	printf 'USBSYNC_HOOK_STRICT=1\n' > "$T/defaults"
	hs_run 100 post-start
	expect_eq "$?" "1" "strict mode"
	# and a VM that is not running is no failure at all
	hs_run 555 post-start
	expect_eq "$?" "0" "vm without socket"
}

test_make_install_lays_every_file_and_uninstall_removes_them() {
	local root=$T/root build
	build=$(dirname "$BIN")
	make -s -C "$TOP" BUILD="$build" install DESTDIR="$root" > "$T/log" 2>&1 || fail "make install: $(cat "$T/log")"
	local f
	for f in usr/local/sbin/usbsync:755 etc/udev/rules.d/90-usbsync.rules:644 \
		etc/systemd/system/usbsync-reconcile.service:644 etc/systemd/system/usbsync-reconcile.timer:644 \
		etc/systemd/system/usbsync-watch.service:644 usr/local/share/man/man8/usbsync.8:644 \
		usr/local/share/usbsync/usbsync-hookscript:755 usr/local/share/usbsync/usbsync.default:644 \
		usr/local/share/bash-completion/completions/usbsync:644; do
		[ -f "$root/${f%:*}" ] || fail "missing ${f%:*}"
		expect_eq "$(stat -c %a "$root/${f%:*}")" "${f#*:}" "mode of ${f%:*}"
	done
	expect_in "$(cat "$root/etc/udev/rules.d/90-usbsync.rules")" "/usr/local/sbin/usbsync reconcile --trigger udev" "rule names the binary"
	expect_not_in "$(cat "$root"/etc/systemd/system/*.service "$root/usr/local/share/usbsync/usbsync-hookscript")" "@SBINDIR@" "paths substituted"
	"$root/usr/local/sbin/usbsync" --help > /dev/null || fail "installed binary does not run"
	make -s -C "$TOP" BUILD="$build" uninstall DESTDIR="$root" > "$T/log" 2>&1 || fail "make uninstall: $(cat "$T/log")"
	expect_eq "$(find "$root" -type f)" "" "files left after uninstall"
	make -s -C "$TOP" BUILD="$build" install DESTDIR="$root" PREFIX=/usr > /dev/null 2>&1 || fail "PREFIX=/usr"
	[ -x "$root/usr/sbin/usbsync" ] || fail "PREFIX not honoured"
}

test_systemd_units_and_udev_rule_are_well_formed() {
	local root=$T/root build units
	build=$(dirname "$BIN")
	# point the units at this build so verify finds the binary
	make -s -C "$TOP" BUILD="$build" install DESTDIR="$root" SBINDIR="$build" > /dev/null 2>&1 || fail "install"
	units=$root/etc/systemd/system
	if command -v systemd-analyze > /dev/null; then
		(cd "$units" && systemd-analyze verify --man=no usbsync-reconcile.service usbsync-reconcile.timer \
			usbsync-watch.service) > "$T/verify" 2>&1 || fail "systemd-analyze verify: $(cat "$T/verify")"
		expect_eq "$(cat "$T/verify")" "" "systemd-analyze verify is silent"
	else
		echo "    (systemd-analyze not installed: unit check skipped)"
	fi
	local rule=$root/etc/udev/rules.d/90-usbsync.rules
	if udevadm verify --help > /dev/null 2>&1; then
		udevadm verify "$rule" > "$T/verify" 2>&1 || fail "udevadm verify: $(cat "$T/verify")"
	fi
	# Structure, checked here whatever udev version: each rule, continuation
	# lines joined, is KEY op "value" items separated by commas; it matches
	# usb_device add/remove and RUNs systemd-run without blocking.
	awk '
		/^#/ || /^$/ { next }
		{ line = line $0 } /\\$/ { sub(/\\$/, "", line); next }
		{
			rest = line; line = ""
			while (rest != "") {
				if (!match(rest, /^[ ,]*[A-Z]+(\{[A-Za-z_]+\})?(==|!=|\+=|=|:=)"[^"]*"/)) { print "bad: " rest; exit 1 }
				rest = substr(rest, RLENGTH + 1); sub(/^[ ,]+/, "", rest)
			}
		}' "$rule" > "$T/rulecheck" || fail "rule does not parse: $(cat "$T/rulecheck")"
	local r
	r=$(cat "$rule")
	expect_in "$r" 'ACTION=="add|remove", SUBSYSTEM=="usb", ENV{DEVTYPE}=="usb_device"' "rule matches"
	expect_in "$r" 'RUN+="/usr/bin/systemd-run --no-block' "hands off to systemd"
	expect_in "$r" '--setenv=ACTION=$env{ACTION} --setenv=DEVPATH=$env{DEVPATH}' "passes the trigger"
}

test_qemu_killed_mid_run_fails_that_vm_only() {
	vm_proxied 100 "" kill-on device_add "$T/100.pid"
	vm_start 101
	conf 100 "3-4.4"
	conf 101 "1-1"
	us reconcile
	expect_rc 1
	expect_in "$OUT$ERR" "usbhost3-4.4" "failure names the device"
	expect_eq "$(usb_ids 101)" "usbhost1-1" "other vm reconciled"
	expect_in "$(history_json --vm 100)" '"result":"failed"' "failure recorded"
}

test_replies_dribbled_byte_by_byte_between_events_still_work() {
	vm_proxied 100 "" dribble
	conf 100 "3-4"
	us reconcile
	expect_rc 0
	expect_eq "$(usb_ids 100)" "usbhost3-4.1.1 usbhost3-4.1.2 usbhost3-4.1.4 usbhost3-4.4" "devices"
	tree_without 3-4.1.4
	us reconcile
	expect_rc 0
	expect_eq "$(usb_ids 100)" "usbhost3-4.1.1 usbhost3-4.1.2 usbhost3-4.4" "after unplug"
}

test_garbage_from_qemu_is_a_clean_error_for_that_vm() {
	local deep i=0 payload
	deep=$(printf '[%.0s' $(seq 5000))
	{ printf '{"return": "'; head -c 2000000 /dev/zero | tr '\0' a; printf '"}'; } > "$T/huge"
	vm_start 101
	conf 101 "1-1"
	conf 100 "3-4.4"
	for payload in '{"return": [' $'{"return": "\xff\xfe"}' "$deep" "@$T/huge" '{"return": 5}' \
		'{"error": 7}' 'null' '{"return": {}} trailing' $'\x1b[2J'; do
		i=$((i + 1))
		vm_proxied "100" "" replace device_add "$payload"
		us reconcile
		[ "$RC" -eq 1 ] || fail "payload $i: exit $RC; $ERR"
		expect_in "$ERR$OUT" "100" "payload $i: error names the vm"
		case "$ERR$OUT" in *$'\x1b'*) fail "payload $i: raw escape printed" ;; esac
		expect_eq "$(usb_ids 101)" "usbhost1-1" "payload $i: other vm fine"
		kill "$(cat "$T/100.pid")" "$PROXY_PID"
		wait "$PROXY_PID" 2>/dev/null
		rm -f "$T/qmp/100.qmp" "$T/real/100.qmp"
	done
}

test_error_reply_to_device_add_is_reported() {
	vm_proxied 100 "" error-on device_add GenericError "Duplicate ID 'usbhost3-4.4' for device"
	conf 100 "3-4.4"
	us reconcile
	expect_rc 1
	expect_in "$OUT" "GenericError: Duplicate ID" "QEMU's words reach the report"
	expect_in "$(history_json)" "Duplicate ID" "and the history"
}

test_locked_or_broken_history_never_blocks_devices() {
	vm_start 100
	conf 100 "3-4.4"
	us reconcile --dry-run   # creates the database
	python3 -c '
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(60)' "$T/db/history.db" > "$T/locker" &   # (killed below: the run may take seconds to start under load)
	local locker=$!
	wait_until 3000 grep -q locked "$T/locker" || fail "locker"
	us reconcile
	kill $locker 2>/dev/null; wait $locker 2>/dev/null
	expect_rc 0
	expect_eq "$(usb_ids 100)" "usbhost3-4.4" "device attached while the db was locked"
	expect_in "$ERR" "warning: history" "warning names the problem"
	expect_in "$ERR" "history.db" "and the file"
	# a database that cannot be written at all
	conf 100 "1-1"
	USBSYNC_DB=/dev/full us reconcile
	expect_rc 0
	expect_eq "$(usb_ids 100)" "usbhost1-1" "device moved with no usable db"
	expect_in "$ERR" "warning: history" "warning"
	USBSYNC_DB=/proc/usbsync/history.db us reconcile
	expect_rc 0
	expect_in "$ERR" "/proc/usbsync" "names the path"
}

test_bad_config_files_are_confined_to_their_vm() {
	vm_start 100
	vm_start 101
	vm_start 102
	printf '3-4.4\r\n# windows line ends\r\n' > "$T/cfg/100.usb.conf"
	mkdir "$T/cfg/101.usb.conf"
	printf '1-1\n\0port 1-2\n' > "$T/cfg/102.usb.conf"
	us reconcile
	expect_rc 2
	expect_eq "$(usb_ids 100)" "usbhost3-4.4" "CRLF config works"
	expect_in "$ERR" "101.usb.conf: not a regular file" "directory named"
	expect_in "$ERR" "102.usb.conf:2: NUL byte" "NUL named with its line"
	expect_eq "$(usb_ids 102)" "" "vm with broken config untouched"
	chmod 666 "$T/cfg/100.usb.conf"
	us reconcile
	expect_rc 2
	expect_in "$ERR" "writable by group or others" "untrusted config refused"
}

test_hostile_udev_environment_is_not_trusted() {
	vm_start 100
	conf 100 "3-4.4"
	ACTION='add;rm -rf /' DEVPATH=$'/devices/../../etc\n' us reconcile
	expect_rc 0
	expect_in "$ERR" "ignoring malformed ACTION/DEVPATH" "warned"
	expect_eq "$(usb_ids 100)" "usbhost3-4.4" "still reconciled"
	local h
	h=$(history_json)
	expect_in "$h" '"trigger":"udev","action":null,"devpath":null' "nothing of it stored"
}

test_a_disk_the_host_has_mounted_is_never_passed_through() {
	TREE=$TREES/disk.umockdev
	vm_start 100 -device qemu-xhci,id=xhci,p2=8,p3=8
	conf 100 $'4-1\n4-3'
	printf '36 35 259:1001 / /media/usb\\040stick rw,relatime shared:1 - vfat /dev/sdzz1 rw\n' > "$T/mountinfo"
	printf 'Filename\tType\tSize\tUsed\tPriority\n' > "$T/swaps"
	export USBSYNC_MOUNTINFO=$T/mountinfo USBSYNC_SWAPS=$T/swaps
	us reconcile
	expect_rc 0
	expect_eq "$(usb_ids 100)" "usbhost4-3" "only the disk nobody uses"
	expect_in "$OUT" "in use by host (/dev/sdzz1 on /media/usb stick)" "reported"
	us tree
	expect_in "$OUT" "vm 100, but in use by host (/dev/sdzz1 on /media/usb stick)" "tree shows it"
	: > "$T/mountinfo"
	us reconcile
	expect_rc 0
	expect_eq "$(usb_ids 100)" "usbhost4-1 usbhost4-3" "attached once unmounted"
}

# ---- connectors (port peers) and serial numbers: tests/trees/connectors.umockdev

test_usb3_stick_in_a_claimed_connector_is_attached_where_it_really_is() {
	TREE=$TREES/connectors.umockdev
	vm_start 100
	conf 100 "port 3-4"
	us reconcile
	expect_rc 0
	expect_eq "$(usb_ids 100)" "usbhost3-4.1 usbhost4-4.2" "both halves of the hub in connector 3-4"
	expect_in "$(usb 100)" "usbhost4-4.2 4 4.2 xhci.0" "QEMU holds the stick on bus 4, port 4.2"
	us status
	expect_rc 0
	expect_in "$OUT" "via connector 3-4" "status says how 4-4.2 was reached"
	us status --json
	expect_in "$OUT" '"via_connector":"3-4"' "status --json too"
}

test_excluding_a_port_excludes_its_peer_and_unequal_peers_are_followed() {
	TREE=$TREES/connectors.umockdev
	vm_start 100
	vm_start 101
	conf 100 $'port 4-4\nexclude port 3-4.2'
	conf 101 "port 3-7"
	us reconcile
	expect_rc 0
	expect_eq "$(usb_ids 100)" "usbhost3-4.1" "4-4.2 is excluded through its peer 3-4.2"
	expect_eq "$(usb_ids 101)" "usbhost4-2" "3-7's peer is 4-2"
}

test_a_serial_rule_gives_each_twin_to_its_vm() {
	TREE=$TREES/connectors.umockdev
	vm_start 100
	vm_start 101
	conf 100 "device 0403:6001 serial B20M7ZP2"
	conf 101 "device 0403:6001 serial A10K3XQ1"
	us reconcile
	expect_rc 0
	expect_eq "$(usb_ids 100)" "usbhost3-6" "the twin with serial B20M7ZP2"
	expect_eq "$(usb_ids 101)" "usbhost3-5" "the twin with serial A10K3XQ1"
	us tree
	expect_in "$OUT" "A10K3XQ1" "tree shows serials"
	expect_in "$OUT" "3-1 = 4-1      hotplug    -          back panel, center, lower  no" \
		"an empty connector is listed too"
	expect_in "$OUT" "3-7 = 4-2      hotplug    removable  front panel, right, upper  yes" \
		"unequal peers on one line"
}

test_without_peer_links_a_port_rule_covers_only_its_bus() {
	TREE=$TREES/connectors-nopeer.umockdev
	vm_start 100
	conf 100 "port 3-4"
	us reconcile
	expect_rc 0
	expect_eq "$(usb_ids 100)" "usbhost3-4.1" "nothing on bus 4"
	us tree
	expect_in "$OUT" "no peer links" "tree says the kernel gives none"
}
# ---- QEMU >= 10.1: qom-list-get, through tests/qmp-shim ----------------------
# The shim greets as QEMU 10.1 and answers qom-list-get as 10.1 does, by
# asking the real QEMU 7.2 behind it.

# vm_shimmed NAME "QEMU ARGS" [SHIM OPTIONS...]: shim log in $T/shim.NAME.log
vm_shimmed() {
	local name=$1 args=$2; shift 2
	mkdir -p "$T/real"
	# shellcheck disable=SC2086
	qemu_paused "$T/real/$name.qmp" "$T/$name.pid" $args || fail "qemu $name did not start"
	VMPIDS="$VMPIDS $(cat "$T/$name.pid")"
	"$TOP/tests/qmp-shim" "$T/qmp/$name.qmp" "$T/real/$name.qmp" log "$T/shim.$name.log" "$@" \
		> "$T/shim.$name" 2>&1 3>&- &
	VMPIDS="$VMPIDS $!"
	wait_until 3000 grep -q ready "$T/shim.$name" || fail "shim for $name did not start"
}
SHIM_VM="-device qemu-xhci,id=xhci,p2=8,p3=8 -device usb-host,id=usb0,bus=xhci.0,port=8,hostbus=9,hostport=9"
shim_log() { tr '\n' ' ' < "$T/shim.$1.log" | sed 's/ $//'; : > "$T/shim.$1.log"; }
stat_of() { echo "$ERR" | grep -o "$1=[0-9]*" | cut -d= -f2; }

# Every attach also asks the runstate (query-status) before it changes the
# VM: a VM being migrated is left alone.  It goes out with the read.
test_qemu_10_1_attach_reads_with_one_qom_list_get() {
	vm_shimmed 100 "$SHIM_VM"
	conf 100 "3-4.4"
	export ACTION=add DEVPATH=/devices/pci0000:00/0000:00:14.0/usb3/3-4/3-4.4
	us reconcile --stats
	expect_rc 0
	expect_eq "$(shim_log 100)" "qmp_capabilities qom-list qom-list-get query-status device_add" "commands"
	expect_eq "$(stat_of qmp_commands)" 5 "commands counted by --stats"
	expect_eq "$(stat_of qmp_fallbacks)" 0 "fallbacks"
	expect_in "$(usb 100)" "usbhost3-4.4 3 4.4 xhci.0 7" "below Proxmox's usb0 on port 8"
	unset ACTION DEVPATH
	us reconcile --trigger manual --stats
	expect_rc 0
	expect_in "$OUT" "nothing to do" "the audit agrees"
}

test_qemu_10_1_sees_an_anonymous_usb_device_with_a_second_qom_list_get() {
	vm_shimmed 100 "$SHIM_VM -device usb-tablet,bus=xhci.0,port=7"
	conf 100 "3-4.4"
	export ACTION=add DEVPATH=/devices/pci0000:00/0000:00:14.0/usb3/3-4/3-4.4
	us reconcile --stats
	expect_rc 0
	expect_eq "$(shim_log 100)" "qmp_capabilities qom-list qom-list-get query-status qom-list-get device_add" "commands"
	expect_in "$(usb 100)" "usbhost3-4.4 3 4.4 xhci.0 6" "ports 8 and 7 taken"
}

test_qemu_10_1_falls_back_when_qom_list_get_fails() {
	local how
	for how in "error GenericError boom" "replace [{\"properties\":5}]" \
		"fail-path /machine/peripheral/usb0" "version 10.0.0"; do
		vm_shimmed 100 "$SHIM_VM" $how
		conf 100 "3-4.4"
		export ACTION=add DEVPATH=/devices/pci0000:00/0000:00:14.0/usb3/3-4/3-4.4
		us reconcile --stats
		expect_rc 0
		case $how in
		version*) expect_eq "$(shim_log 100)" \
			"qmp_capabilities qom-list human-monitor-command qom-get qom-get query-status device_add" \
			"$how: never asked" ;;
		*) expect_eq "$(shim_log 100)" \
			"qmp_capabilities qom-list qom-list-get query-status human-monitor-command qom-get qom-get device_add" \
			"$how: the older reads"
		   expect_eq "$(stat_of qmp_fallbacks)" 1 "$how: fallbacks" ;;
		esac
		expect_in "$(usb 100)" "usbhost3-4.4 3 4.4 xhci.0 7" "$how: attached all the same"
		kill "$(cat "$T/100.pid")"
		for p in $VMPIDS; do kill "$p" 2>/dev/null; done
		VMPIDS=""
		rm -f "$T/qmp/100.qmp" "$T/real/100.qmp"
	done
}

test_qemu_10_1_puts_slow_devices_on_ehci_companions_read_with_qom_list_get() {
	vm_shimmed 100 "$PVE_Q35"
	conf 100 "$SLOW"
	export ACTION=add DEVPATH=/devices/pci0000:00/0000:00:14.0/usb3/3-4/3-4.1/3-4.1.1
	us reconcile --stats
	expect_rc 0
	expect_in "$(shim_log 100)" "qom-list qom-list-get query-status device_add" "commands"
	expect_eq "$(stat_of qmp_fallbacks)" 0 "fallbacks"
	expect_eq "$(buses_of 100)" "usbhost3-4.1.1 ehci.0 6 usbhost3-4.1.2 ehci.0 5 " \
		"full and low speed on ehci.0, from the top port down"
}


# ---- publishing: what a changed VM holds is read on the run's own session ----

# A run that changes a VM reads it again for publication behind its last
# change, on the same session (runstate with the qtree, then the port
# counts): no second session.  The shim's log is every command any client
# sent, so each qmp_capabilities there is one session.
PUB_VM="-device qemu-xhci,id=xhci,p2=15,p3=15"
sessions_in_log() { grep -c '^qmp_capabilities$' "$T/shim.$1.log"; }

test_publishing_a_change_reads_on_the_runs_own_session() {
	export USBSYNC_STATE_DIR=$T/state USBSYNC_NODE=pve1
	vm_shimmed 100 "$PUB_VM" version 7.2.0
	conf 100 "3-4.4"
	ACTION=add DEVPATH=/devices/pci0000:00/0000:00:14.0/usb3/3-4/3-4.4 us reconcile --stats
	expect_rc 0
	expect_in "$(usb 100)" "usbhost3-4.4 3 4.4 xhci.0 15" "attached"
	expect_in "$(cat "$T/state/100.json")" '"id":"usbhost3-4.4","bus":"xhci.0","port":15,"hostbus":3,"hostport":"4.4"' "published"
	expect_eq "$(stat_of qmp_sessions)" 1 "an attach that publishes: sessions"
	expect_eq "$(sessions_in_log 100)" 1 "sessions QEMU saw"
	expect_eq "$(shim_log 100)" \
		"qmp_capabilities qom-list human-monitor-command qom-get qom-get query-status device_add query-status human-monitor-command qom-get qom-get" \
		"the runstate and the read behind the add"
	expect_eq "$(stat_of qmp_commands)" 11 "every command counted by --stats"

	# A removal (an audit): the read goes out in the same write as the
	# device_del, and the runstate after it.
	conf 100 ""
	us reconcile --stats
	expect_rc 0
	expect_eq "$(usb_ids 100)" "" "removed"
	expect_in "$(cat "$T/state/100.json")" '"devices":[]' "the empty set published"
	expect_eq "$(stat_of qmp_sessions)" 1 "a removal that publishes: sessions"
	expect_eq "$(shim_log 100)" \
		"qmp_capabilities human-monitor-command query-status device_del query-status human-monitor-command qom-get qom-get" \
		"the runstate and the read behind the removal"
	expect_eq "$(stat_of qmp_commands)" 8 "every command counted"

	# Nothing changed but nothing is published either (the file is gone):
	# the run reads on a session of its own, and counts it.
	conf 100 "3-4.4"
	us reconcile
	rm "$T/state/100.json"
	: > "$T/shim.100.log"
	us reconcile --stats
	expect_rc 0
	expect_in "$OUT" "nothing to do" "a no-op"
	expect_in "$(cat "$T/state/100.json")" '"id":"usbhost3-4.4"' "published again"
	expect_eq "$(sessions_in_log 100)" 2 "the no-op's session, then publication's own"
	expect_eq "$(stat_of qmp_sessions)" 2 "both counted"
	expect_eq "$(shim_log 100)" \
		"qmp_capabilities human-monitor-command qmp_capabilities query-status human-monitor-command qom-get qom-get" \
		"its runstate first, then the read"
	expect_eq "$(stat_of qmp_commands)" 7 "every command counted"

	# A run that publishes nothing asks nothing more.
	us reconcile --stats
	expect_eq "$(shim_log 100)" "qmp_capabilities human-monitor-command" "a no-op audit"
	ACTION=add DEVPATH=/devices/pci0000:00/0000:00:14.0/usb3/3-4/3-4.4 us reconcile --stats
	expect_eq "$(shim_log 100)" "qmp_capabilities qom-list" "a no-op udev run"
}

# Two VMs changed at once: the one that leaves phase one first closes its
# monitor while the other is read, and the add phase opens it again; its
# re-read goes out with its adds there, never on a third session.
test_publishing_two_changed_vms_reads_each_on_its_runs_sessions() {
	export USBSYNC_STATE_DIR=$T/state USBSYNC_NODE=pve1
	vm_shimmed 100 "$PUB_VM" version 7.2.0
	vm_shimmed 101 "$PUB_VM" version 7.2.0
	conf 100 "3-4.4"
	conf 101 "3-4.1.1"
	us reconcile --stats
	expect_rc 0
	expect_in "$(cat "$T/state/100.json")" '"id":"usbhost3-4.4"' "100 published"
	expect_in "$(cat "$T/state/101.json")" '"id":"usbhost3-4.1.1"' "101 published"
	local n100 n101 log
	n100=$(sessions_in_log 100) n101=$(sessions_in_log 101)
	expect_eq "$(( n100 + n101 ))" 3 "one VM kept its session for the adds, the other opened one more"
	expect_eq "$(stat_of qmp_sessions)" 3 "as --stats counts them"
	for vm in 100 101; do
		log=$(shim_log $vm)
		expect_in "$log" "device_add query-status human-monitor-command qom-get qom-get" "vm $vm: read behind its add"
		expect_eq "$(echo "$log" | grep -o query-status | wc -l)" 2 "vm $vm: runstate before and after the change"
	done
}

# On QEMU >= 10.1 a hub QEMU inserted is not seen (actual.c): an add to its
# port fails and is retried one port down.  What was read behind the first
# add is then stale; the read behind the retry is what gets published.
test_publishing_after_a_retried_add_reads_behind_the_retry() {
	export USBSYNC_STATE_DIR=$T/state USBSYNC_NODE=pve1
	vm_shimmed 100 "-device qemu-xhci,id=xhci,p2=3,p3=3"
	local d
	# the third device without port= gets a hub QEMU inserts on port 3
	for d in usb-tablet usb-kbd usb-mouse; do
		"$PEEK" "$T/real/100.qmp" run '{"execute":"device_add","arguments":{"driver":"'$d'","id":"'$d'","bus":"xhci.0"}}' \
			> /dev/null || fail "device_add $d"
	done
	for d in usb-tablet usb-kbd usb-mouse; do
		"$PEEK" "$T/real/100.qmp" run '{"execute":"device_del","arguments":{"id":"'$d'"}}' > /dev/null \
			|| fail "device_del $d"
	done
	: > "$T/shim.100.log"
	conf 100 "3-4.4"
	ACTION=add DEVPATH=/devices/pci0000:00/0000:00:14.0/usb3/3-4/3-4.4 us reconcile --stats
	expect_rc 0
	expect_eq "$(shim_log 100)" \
		"qmp_capabilities qom-list qom-list-get query-status device_add query-status human-monitor-command qom-list-get device_add query-status human-monitor-command qom-list-get" \
		"port 3 taken, port 2 tried, each add with a read behind it"
	expect_eq "$(stat_of qmp_sessions)" 1 "sessions"
	expect_in "$(usb 100)" "usbhost3-4.4 3 4.4 xhci.0 2" "on port 2"
	expect_in "$(cat "$T/state/100.json")" '"id":"usbhost3-4.4","bus":"xhci.0","port":2,' "published where it landed"
}

test_metrics_count_devices_by_state_and_runs_by_trigger() {
	TREE=$TREES/hostile.umockdev
	vm_start 100
	conf 100 "5-1"
	conf 101 "1-1"
	us metrics
	expect_rc 0
	printf '%s\n' "$OUT" > "$T/before.prom"
	"$TOP/tests/promcheck" "$T/before.prom" || fail "metrics do not parse: $OUT"
	# (and the checker does reject what the format forbids)
	printf '# HELP a x\n# TYPE a gauge\na{l="\xff\\x"} 1\n' | "$TOP/tests/promcheck" 2>/dev/null \
		&& fail "promcheck accepted a raw byte and a bad escape"
	expect_in "$OUT" 'usbsync_devices{vm="100",state="missing"} 1' "a planned add is missing"
	expect_in "$OUT" 'usbsync_devices{vm="100",state="attached"} 0' "zeros are printed"
	expect_in "$OUT" 'usbsync_vm_state{vm="101",state="not_running"} 1' "a VM without QEMU"
	expect_in "$OUT" 'product="Evil \"quoted\" back\\slash\nline2 '$'\xef\xbf\xbd''[31mRED' "label escaped"
	mkdir "$T/tf"
	us reconcile --textfile-dir "$T/tf"
	expect_rc 0
	"$TOP/tests/promcheck" "$T/tf/usbsync.prom" || fail "textfile does not parse"
	local m
	m=$(cat "$T/tf/usbsync.prom")
	expect_in "$m" 'usbsync_devices{vm="100",state="attached"} 1' "an add that worked is attached"
	expect_in "$m" 'usbsync_devices{vm="100",state="missing"} 0' "nothing missing after"
	expect_in "$m" 'usbsync_runs_total{trigger="manual"} 1' "the run is counted"
	expect_in "$m" 'usbsync_runs_failed_total{trigger="manual"} 0' "not as failed"
	expect_in "$m" 'usbsync_qmp_errors_total{vm="100"} 0' "no QMP error"
	expect_in "$m" 'usbsync_last_run_exit_code 0' "last exit code"
	expect_eq "$(ls -A "$T/tf")" "usbsync.prom" "no temporary file left"
	# A textfile dir that does not exist (no node_exporter) is not an error.
	us reconcile --trigger timer --textfile-dir "$T/no-such-dir"
	expect_rc 0
	expect_eq "$ERR" "" "silent without the directory"
	[ ! -e "$T/no-such-dir" ] || fail "created the textfile dir"
	us metrics
	expect_in "$OUT" 'usbsync_runs_total{trigger="timer"} 1' "timer run counted"
	expect_in "$OUT" 'usbsync_runs_total{trigger="manual"} 1' "manual count kept"
	expect_in "$OUT" 'usbsync_devices{vm="100",state="attached"} 1' "metrics re-read QEMU"
	# Dry runs and status are not runs that applied anything.
	us reconcile --dry-run
	us metrics
	expect_in "$OUT" 'usbsync_runs_total{trigger="manual"} 1' "dry run not counted"
}

test_metrics_count_qmp_errors_and_failed_runs() {
	vm_proxied 100 "" error-on device_add GenericError "Duplicate ID 'usbhost3-4.4' for device"
	conf 100 "3-4.4"
	mkdir "$T/tf"
	us reconcile --textfile-dir "$T/tf"
	expect_rc 1
	"$TOP/tests/promcheck" "$T/tf/usbsync.prom" || fail "metrics do not parse"
	local m
	m=$(cat "$T/tf/usbsync.prom")
	expect_in "$m" 'usbsync_qmp_errors_total{vm="100"} 1' "the failed device_add"
	expect_in "$m" 'usbsync_runs_failed_total{trigger="manual"} 1' "the failed run"
	expect_in "$m" 'usbsync_last_run_exit_code 1' "its exit code"
	expect_in "$m" 'usbsync_devices{vm="100",state="missing"} 1' "an add that failed is still missing"
}

# in_journal_ns SCRIPT: run the bash SCRIPT (which sees $T, $TREE, $BIN) in
# private mount and pid namespaces with a tmpfs on /run and a real
# systemd-journald on it, as under systemd; journal files land under
# $T/journal (journald and everything else there die with the namespace).
in_journal_ns() {
	T=$T TREE=$TREE BIN=$BIN unshare --mount --pid --fork --mount-proc bash -c '
		mount -t tmpfs tmpfs /run && mkdir -p "$T/journal" /run/log/journal &&
		mount --bind "$T/journal" /run/log/journal || exit 99
		/lib/systemd/systemd-journald > "$T/journald.log" 2>&1 &
		for _ in $(seq 100); do [ -S /run/systemd/journal/socket ] && break; sleep 0.05; done
		'"$1"
}

test_journal_gets_structured_entries_when_stderr_is_the_journal() {
	if ! [ -x /lib/systemd/systemd-journald ] || ! unshare --mount --pid --fork true 2> /dev/null; then
		echo "    (no systemd-journald or no namespaces here: skipped)"
		return 0
	fi
	TREE=$TREES/hostile.umockdev
	vm_start 100
	conf 100 "5-1"
	conf 101 "bogus line"
	# systemd sets JOURNAL_STREAM to the device:inode of the stream it gave
	# as stderr; a stream it names that is not stderr is not the journal.
	in_journal_ns '
		: > "$T/stderr"
		s=$(stat -c %d:%i "$T/stderr")
		JOURNAL_STREAM=1:2 umockdev-run -d "$TREE" -- "$BIN" reconcile --dry-run > /dev/null 2>> "$T/stderr"
		JOURNAL_STREAM=$s umockdev-run -d "$TREE" -- "$BIN" reconcile --dry-run > /dev/null 2>> "$T/stderr"
		JOURNAL_STREAM=1:2 umockdev-run -d "$TREE" -- "$BIN" reconcile --vm 101 > /dev/null 2>> "$T/stderr"
		journalctl --sync
		journalctl -D /run/log/journal -o json SYSLOG_IDENTIFIER=usbsync > "$T/none.json"
		JOURNAL_STREAM=$s umockdev-run -d "$TREE" -- "$BIN" reconcile > "$T/out" 2>> "$T/stderr"
		echo $? > "$T/rc"
		journalctl --sync
		journalctl -D /run/log/journal -o json USBSYNC_VM=100 > "$T/vm100.json"
		journalctl -D /run/log/journal -o json MESSAGE_ID=0474b08110974f8b96fcdadefd04d113 > "$T/config.json"
	' || fail "namespace: $(cat "$T/journald.log" 2>/dev/null)"
	expect_eq "$(cat "$T/rc")" 2 "exit code (101's config error)"
	[ ! -s "$T/none.json" ] || fail "dry runs or a foreign stream logged: $(cat "$T/none.json")"
	expect_in "$(cat "$T/out")" "usbhost5-1" "the plain output is still printed"
	python3 - "$T" "$TREE" <<'PY' || fail "journal entries: $(cat "$T/vm100.json" "$T/config.json")"
import json, sys
T, tree = sys.argv[1], sys.argv[2]
def entries(name):
    return [json.loads(l) for l in open(f'{T}/{name}')]
def raw(v):  # journalctl -o json gives non-text values as byte arrays
    return bytes(v) if isinstance(v, list) else v.encode()
vm = entries('vm100.json')
assert len(vm) == 1, vm
a = vm[0]
assert a['MESSAGE_ID'] == '015a703f52394dd39354ddfbb006e5e8', a
assert (a['USBSYNC_OP'], a['USBSYNC_PORT'], a['USBSYNC_RESULT'], a['PRIORITY']) == ('add', '5-1', 'ok', '6'), a
assert (a['USBSYNC_ID'], a['USBSYNC_TRIGGER'], a['USBSYNC_DEVICE']) == ('usbhost5-1', 'manual', '1209:0001'), a
# The product's bytes, newline, escape and invalid UTF-8 included, arrive intact.
hexp = [l for l in open(tree) if l.startswith('H: product=')][0].split('=', 1)[1].strip()
assert raw(a['USBSYNC_PRODUCT']) == bytes.fromhex(hexp).rstrip(b'\n'), a['USBSYNC_PRODUCT']
msg = raw(a['MESSAGE'])
assert b'\x1b' not in msg and b'\n' not in msg, msg
cfg = entries('config.json')
assert len(cfg) == 1 and cfg[0]['USBSYNC_VM'] == '101' and cfg[0]['PRIORITY'] == '3', cfg
assert 'bogus' in cfg[0]['USBSYNC_ERROR'] and cfg[0]['USBSYNC_OP'] == 'config', cfg
PY
}

# ---- runner ------------------------------------------------------------------

SAN_REPORT='(Address|Leak|UndefinedBehavior)Sanitizer|runtime error:'

# sanitized NAME: fail NAME if a file its test wrote holds a sanitizer report
sanitized() {
	local files
	files=$(grep -rIlE "$SAN_REPORT" "$ROOT/$1" "$ROOT/$1.stderr" 2>/dev/null) || return 0
	echo "    FAIL: sanitizer reports in: $(echo $files)" >&2
	grep -h -m1 -A20 -E "$SAN_REPORT" $files | head -40 | sed 's/^/    /' >&2
	return 1
}

passed=0 failed=0 failures=""
for t in $(declare -F | awk '{print $3}' | grep '^test_'); do
	[ -z "$PATTERN" ] || [[ $t == *$PATTERN* ]] || continue
	name=${t#test_}
	# Each test in its own subshell, killed (its VMs with it) after 3 minutes.
	( setup "$name"; "$t" ) 2> "$ROOT/$name.stderr" &
	pid=$!
	# (its output goes nowhere, so a leftover sleep never holds our pipe open)
	( sleep $(( 180 * ${IT_TIME_SCALE:-1} )); kill -TERM $pid ) > /dev/null 2>&1 &
	watchdog=$!
	wait $pid
	rc=$?
	kill $watchdog 2>/dev/null; wait $watchdog 2>/dev/null
	cat "$ROOT/$name.stderr" >&2
	[ $rc -ne 143 ] || echo "    TIMEOUT after $(( 180 * ${IT_TIME_SCALE:-1} )) s" >&2
	[ $rc -ne 0 ] || sanitized "$name" || rc=1
	if [ $rc -eq 0 ]; then
		echo "PASS $name"
		passed=$((passed + 1))
	else
		echo "FAIL $name"
		failed=$((failed + 1))
		failures="$failures $name"
	fi
done
echo
[ -z "$failures" ] || echo "failed:$failures"
echo "integration: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
