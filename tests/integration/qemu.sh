# tests/integration/qemu.sh - QEMU as it may answer: 10.1's qom-list-get
# and the older reads it falls back on (tests/qmp-shim); a QEMU that dies,
# dribbles its replies, sends garbage or an error (tests/qmp-proxy).
# Sourced by tests/integration.sh, whose helpers and runner these tests use.
# shellcheck shell=bash

# ---- QEMU >= 10.1: qom-list-get, through tests/qmp-shim ----------------------

SHIM_VM="-device qemu-xhci,id=xhci,p2=8,p3=8 -device usb-host,id=usb0,bus=xhci.0,port=8,hostbus=9,hostport=9"

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

# ---- a QEMU that misbehaves, through tests/qmp-proxy -------------------------

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
