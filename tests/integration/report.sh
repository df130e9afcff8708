# tests/integration/report.sh - what usbsync tells: history (and a history
# that cannot be used), status, tree, metrics, the journal.
# Sourced by tests/integration.sh, whose helpers and runner these tests use.
# shellcheck shell=bash

# ---- history -----------------------------------------------------------------

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

# ---- status and tree ---------------------------------------------------------

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

# ---- metrics -----------------------------------------------------------------

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

# ---- the journal -------------------------------------------------------------

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
