#!/bin/bash
# Integration tests: the real usbsync binary against real paused QEMU VMs
# and fake host USB trees (umockdev).  Every test runs in a subshell on its
# own temp dir and kills the VMs it started, by pid, whatever happens.
#
#   tests/integration.sh build/usbsync [TEST_NAME_PATTERN]
#
# This file is the harness: the helpers tests share, then the runner.  The
# tests are in tests/integration/<subject>.sh, sourced below, each with the
# helpers only it uses.
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

# vm_shimmed NAME "QEMU ARGS" [SHIM OPTIONS...]: a VM whose monitor is reached
# through tests/qmp-shim; shim log in $T/shim.NAME.log.
# The shim greets as QEMU 10.1 and answers qom-list-get as 10.1 does, by
# asking the real QEMU 7.2 behind it.
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
# shim_log NAME: the commands the shim passed on since the last call
shim_log() { tr '\n' ' ' < "$T/shim.$1.log" | sed 's/ $//'; : > "$T/shim.$1.log"; }

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

history_json() { "$BIN" history --json "$@"; }

# stat_of NAME: the value of NAME in the --stats line of the last run
stat_of() { echo "$ERR" | grep -o "$1=[0-9]*" | cut -d= -f2; }

# ---- tests: tests/integration/<subject>.sh -----------------------------------
# Each test is a function test_<what it shows>; the runner below finds them
# by name (declare -F lists them in name order, whatever file holds them).

# shellcheck source=tests/integration/reconcile.sh
. "$TOP/tests/integration/reconcile.sh"
# shellcheck source=tests/integration/proxmox.sh
. "$TOP/tests/integration/proxmox.sh"
# shellcheck source=tests/integration/qemu.sh
. "$TOP/tests/integration/qemu.sh"
# shellcheck source=tests/integration/service.sh
. "$TOP/tests/integration/service.sh"
# shellcheck source=tests/integration/report.sh
. "$TOP/tests/integration/report.sh"
# shellcheck source=tests/integration/hostile.sh
. "$TOP/tests/integration/hostile.sh"

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
	# (its output goes nowhere, so a sleep never holds our pipe open; killed,
	# it takes its sleep with it)
	( trap 'kill $s; exit 0' TERM; sleep $(( 180 * ${IT_TIME_SCALE:-1} )) & s=$!
	  wait $s; kill -TERM $pid ) > /dev/null 2>&1 &
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
