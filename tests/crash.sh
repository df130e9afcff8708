#!/bin/bash
# Crash consistency: `usbsync reconcile` killed with SIGKILL at every point
# of a run that moves devices in two real paused QEMUs, then checked:
#  - no lock is left held (the next run neither waits nor coalesces away);
#  - the history database passes PRAGMA integrity_check, and holds the
#    killed run's record whole or not at all (never a run without events);
#  - the next run converges: each VM holds exactly what its config and the
#    tree say (read by a QMP client of its own, not by usbsync), and an audit
#    (`reconcile --check`) then finds nothing to change.
#
#   tests/crash.sh build-hooks/usbsync
#
# The binary must be built with -DUSBSYNC_TEST_HOOKS (`make crash` does):
# common/testhook.h says how USBSYNC_TEST_CRASH_AT names a point.  Points
# counted per process (qmp:sent, qmp:reply) are tried at 1, 2, ... until
# a run finishes without reaching that count.
set -u

BIN=$(realpath "$1")
TOP=$(cd "$(dirname "$0")/.." && pwd)
TREE=$TOP/tests/trees/blog.umockdev
POINT="setup"

fail() {
	echo "FAIL crash at $POINT: $*" >&2
	exit 1
}

# 3-4.4 moves from vm 100 to vm 101, the stale usbhost9-9 goes, 3-4.1.1
# stays, and each VM gains the rest of its ports: removals and additions
# in both VMs.
START_100="usbhost3-4.1.1 usbhost3-4.4 usbhost9-9"
WANT_100="usbhost3-4.1.1 usbhost3-4.1.2 usbhost3-4.1.4"
WANT_101="usbhost1-1 usbhost3-4.4"

# The VMs and the files, then the test itself inside one umockdev-run
# (which can take seconds to start on a loaded machine).
if [ "${2:-}" != inside ]; then
	# shellcheck source=tests/lib.sh
	. "$TOP/tests/lib.sh"
	T=$(mktemp -d /tmp/usbsync-crash.XXXXXX)
	PIDS=""
	trap 'for p in $PIDS; do kill "$p" 2>/dev/null; done; rm -rf "$T"' EXIT
	trap 'exit 143' TERM INT
	mkdir -p "$T/cfg" "$T/qmp"
	chmod 700 "$T/cfg"
	printf 'port 3-4\nexclude port 3-4.4\n' > "$T/cfg/100.usb.conf"
	printf 'port 1-1\nport 3-4.4\n' > "$T/cfg/101.usb.conf"
	for vm in 100 101; do
		qemu_paused "$T/qmp/$vm.qmp" "$T/$vm.pid" || fail "qemu $vm did not start"
		PIDS="$PIDS $(cat "$T/$vm.pid")"
	done
	export T
	umockdev-run -d "$TREE" -- bash "$0" "$BIN" inside
	exit $?
fi

export USBSYNC_CONFIG_DIR=$T/cfg USBSYNC_QMP_DIR=$T/qmp USBSYNC_DB=$T/db/history.db
export USBSYNC_RUN_DIR=$T/run USBSYNC_TIMEOUT=10 USBSYNC_LOCK_WAIT=3
unset USBSYNC_TEST_CRASH_AT
# A udev run, as most are: it coalesces through wait.lock.
UDEV="ACTION=add DEVPATH=/devices/pci0000:00/0000:00:14.0/usb3/3-4/3-4.1"

# vms reset|show: asks one python QMP client, started once (a python start
# costs up to a second on a loaded machine), which connects to each VM
# only while it asks.  reset: each VM back to where every run starts;
# show: each VM's usb-host devices, "vm id hostbus hostport".  It answers
# with its lines, then "." (or "! why").
cat > "$T/vms.py" <<'EOF'
import json, socket, sys


class Qmp:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(10)
        self.s.connect(path)
        self.f = self.s.makefile("rb")
        self.read()
        self.cmd("qmp_capabilities")

    def read(self):
        while True:
            msg = json.loads(self.f.readline())
            if "event" not in msg:
                return msg

    def cmd(self, name, **args):
        self.s.sendall(json.dumps({"execute": name, "arguments": args}).encode())
        reply = self.read()
        if "error" in reply:
            raise RuntimeError("%s: %s" % (name, reply["error"]))
        return reply["return"]


def hosts(q):
    for p in q.cmd("qom-list", path="/machine/peripheral"):
        if p["type"] == "child<usb-host>":
            get = lambda prop: q.cmd("qom-get", path="/machine/peripheral/" + p["name"], property=prop)
            yield p["name"], get("hostbus"), get("hostport")


def reset(q, want):
    for h in list(hosts(q)):
        q.cmd("device_del", id=h[0])
    for port, id in enumerate(want, 1):
        bus, hostport = id[len("usbhost"):].split("-", 1)
        q.cmd("device_add", driver="usb-host", id=id, bus="xhci.0", port=str(port),
              hostbus=int(bus), hostport=hostport)
    got = sorted(h[0] for h in hosts(q))
    if got != sorted(want):
        raise RuntimeError("after reset it holds %s" % got)


def ask(what, vm, q):
    if what == "show":
        for h in sorted(hosts(q)):
            print(vm, *h)
    else:
        reset(q, start if vm == "100" else [])


qmpdir, start = sys.argv[1], sys.argv[2].split()
for what in sys.stdin:
    try:
        for vm in ("100", "101"):
            q = Qmp("%s/%s.qmp" % (qmpdir, vm))
            try:
                ask(what.strip(), vm, q)
            finally:  # the monitor serves one client: let go at once
                q.f.close()
                q.s.close()
        print(".", flush=True)
    except Exception as e:
        print("! vm %s: %s" % (vm, e), flush=True)
EOF
coproc VMS { python3 -u "$T/vms.py" "$T/qmp" "$START_100"; }
vms() {
	local line
	echo "$1" >&"${VMS[1]}"
	while IFS= read -r -t 60 line <&"${VMS[0]}"; do
		case $line in
		.) return 0 ;;
		"! "*) fail "vms $1: ${line#! }" ;;
		*) echo "$line" ;;
		esac
	done
	fail "vms $1: no answer"
}

sql() { sqlite3 "$USBSYNC_DB" "$1"; }
# (a run killed while it created the database leaves it without tables)
has_schema() { [ -e "$USBSYNC_DB" ] && [ "$(sql "SELECT count(*) FROM sqlite_master WHERE name = 'runs'")" = 1 ]; }
runs() { if has_schema; then sql 'SELECT count(*) FROM runs'; else echo 0; fi; }

# Each VM holds exactly what it should, and each device passes the host
# port its id names.
check_vms() {
	local vm id bus port got100="" got101=""
	vms show > "$T/vms" || exit 1
	while read -r vm id bus port; do
		[ "$id" = "usbhost$bus-$port" ] || fail "vm $vm: $id passes $bus-$port"
		if [ "$vm" = 100 ]; then got100="$got100 $id"; else got101="$got101 $id"; fi
	done < "$T/vms"
	[ "${got100# }" = "$WANT_100" ] || fail "vm 100 holds '${got100# }', expected '$WANT_100'"
	[ "${got101# }" = "$WANT_101" ] || fail "vm 101 holds '${got101# }', expected '$WANT_101'"
}

# us [VAR=VALUE]... ARGS...: run usbsync (already under the fake tree)
# (the shell's own "Killed" notice for a killed run is not wanted)
us() {
	{ env "$@" > "$T/out" 2> "$T/err"; } 2> /dev/null
}

# After a kill: no lock held, the database whole, and the next run converges.
check_after_kill() {
	local before=$1 expect_runs=$2 rc
	flock -n "$T/run/run.lock" true || fail "run.lock still held"
	flock -n "$T/run/wait.lock" true || fail "wait.lock still held"
	if [ -e "$USBSYNC_DB" ]; then
		[ "$(sql 'PRAGMA integrity_check')" = ok ] || fail "integrity_check: $(sql 'PRAGMA integrity_check')"
	fi
	if has_schema; then
		[ "$(sql 'SELECT count(*) FROM runs WHERE id NOT IN (SELECT run_id FROM events)')" = 0 ] ||
			fail "a run was recorded without its events"
	fi
	[ "$(runs)" = $((before + expect_runs)) ] ||
		fail "history holds $(runs) runs, expected $((before + expect_runs))"
	us $UDEV "$BIN" reconcile
	rc=$?
	[ $rc -eq 0 ] || fail "next run exited $rc: $(cat "$T/out" "$T/err")"
	grep -q coalesced "$T/out" && fail "next run coalesced away: a lock was left behind"
	check_vms
	us "$BIN" reconcile --check
	rc=$?
	[ $rc -eq 0 ] || fail "an audit after the next run still finds drift (exit $rc): $(cat "$T/out")"
	[ "$(sql 'PRAGMA integrity_check')" = ok ] || fail "integrity_check after the next run"
}

# crash_at NAME N [RUNS]: kill a run at the N-th time it reaches NAME; RUNS
# is how many history rows the killed run leaves (default 0).  Returns 1,
# checking nothing, when the run finished without reaching it.
crash_at() {
	local before
	POINT=$1:$2
	vms reset
	before=$(runs)
	us $UDEV USBSYNC_TEST_CRASH_AT="$POINT" "$BIN" reconcile
	if ! grep -q "test hook: killed at $POINT\$" "$T/err"; then
		grep -q "test hook" "$T/err" && fail "killed elsewhere: $(cat "$T/err")"
		return 1
	fi
	check_after_kill "$before" "${3:-0}"
	echo "    killed at $POINT: recovered"
}

every() {
	local n=1
	while crash_at "$1" $n; do
		n=$((n + 1))
		[ $n -le 64 ] || fail "more than 64 points named $1"
	done
	[ $n -gt 1 ] || fail "$1 never reached"
}

start=$(date +%s)
# The first run creates the database: kill it inside that transaction.
crash_at store:schema 1 || fail "not reached"
crash_at lock:held 1 || fail "not reached"
every qmp:sent
every qmp:reply
crash_at store:begin 1 || fail "not reached"
crash_at store:commit 1 || fail "not reached"
crash_at store:committed 1 1 || fail "not reached"
echo "crash: every point recovered ($(( $(date +%s) - start )) s)"
