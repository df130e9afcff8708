# tests/integration/reconcile.sh - the core of a run: what each VM gets
# (hubs, unplugs, moves, conflicts, excludes, ports), one VM's failure
# confined to it, connectors and serial numbers.
# Sourced by tests/integration.sh, whose helpers and runner these tests use.
# shellcheck shell=bash

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
