# tests/integration/proxmox.sh - Proxmox: its usbN ports and its USB
# controller, 'controller none', live migration and the published state,
# USB mappings.
# Sourced by tests/integration.sh, whose helpers and runner these tests use.
# shellcheck shell=bash

# ---- Proxmox's usbN ports and its USB controller -----------------------------

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

# ---- live migration, the published state, mappings ---------------------------

# on_node2 CMD...: run with node pve2's dirs (its own config and QMP dirs)
on_node2() { USBSYNC_NODE=pve2 USBSYNC_QMP_DIR=$T/node2/qmp USBSYNC_CONFIG_DIR=$T/node2/cfg "$@"; }
peek_status() { "$PEEK" "$1" run '{"execute":"query-status"}' | sed 's/.*"status": "\([a-z-]*\)".*/\1/'; }
migrated() { "$PEEK" "$T/qmp/$1.qmp" run '{"execute":"query-migrate"}' | grep -q '"status": "completed"'; }
# migrate VM SOCKET: QMP migrate of node pve1's VM to the incoming QEMU
# listening on SOCKET; fail unless the source says completed (which it
# says even when the target then dies on the stream: ask the target too)
migrate() {
	"$PEEK" "$T/qmp/$1.qmp" run "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"unix:$2\"}}" > /dev/null \
		|| fail "$1: migrate refused"
	wait_until 20000 migrated "$1" || fail "$1: migration: $("$PEEK" "$T/qmp/$1.qmp" run '{"execute":"query-migrate"}')"
}

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

	migrate 100 "$T/mig.sock"
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
	migrate 100 "$T/mig.sock"
	expect_eq "$(peek_status "$T/node2/qmp/100.qmp")" "prelaunch" "the target has the VM"
	USBSYNC_DB=$T/node2/db/history.db on_node2 us status
	expect_in "$OUT" "  controller xhci (qemu-xhci on pci.1 addr 0x1b): added by usbsync at $at" "the hook's add counts"
}

in_runstate() { [ "$(peek_status "$1" 2> /dev/null)" = "$2" ]; }

# A publication is only as fresh as usbsync's last run on the source: the
# guest may have let go of Proxmox's xhci (and QEMU removed everything on
# it), or someone device_del'ed a device by hand.  The target then adds
# more than the stream holds.  QEMU 7.2 refuses a section it has no device
# for, never a device the stream has no section for (that one stays as it
# was created), so the migration completes; the target's own reconcile
# then removes the copies.  It removes no controller: the extra xhci stays
# (QEMU told the guest of no hot-plug: that state came from the source).
test_live_migration_survives_a_stale_publication_listing_more() {
	mkdir -p "$T/state" "$T/node2/qmp" "$T/node2/cfg"
	chmod 700 "$T/node2/cfg"
	export USBSYNC_STATE_DIR=$T/state
	local vm t
	local -A published
	for vm in 100 101; do
		pve_vm_start $vm
		qmp_run $vm '{"execute":"cont"}' # running, as on Proxmox
	done
	conf 100 "3-4.4"
	conf 101 "3-4.1"
	USBSYNC_NODE=pve1 us reconcile
	expect_rc 0
	expect_in "$(cat "$T/state/100.json")" '"controller":{"id":"xhci"' "100: the controller is published"
	expect_in "$(cat "$T/state/100.json")" '"id":"usbhost3-4.4"' "100: its device is published"
	expect_in "$(cat "$T/state/101.json")" '"id":"usbhost3-4.1.2"' "101: 3-4.1.2 is published"
	# Behind usbsync's back: 100's guest lets go of the xhci Proxmox
	# unplugged; 101 loses a device to a device_del by hand.
	proxmox_unplugs_xhci 100
	"$PEEK" "$T/qmp/100.qmp" guest-eject xhci > /dev/null || fail "the guest did not let go"
	has_no_xhci 100 || fail "100 still has its xhci"
	expect_eq "$(usb_ids 100)" "" "100 holds no device"
	qmp_run 101 '{"execute":"device_del","arguments":{"id":"usbhost3-4.1.2"}}'
	expect_eq "$(usb_ids 101)" "usbhost3-4.1.1 usbhost3-4.1.4" "101 holds one device fewer"
	published[100]="usbhost3-4.4 3 0 xhci.0 15 "
	published[101]="usbhost3-4.1.1 3 0 xhci.0 15 usbhost3-4.1.2 3 0 xhci.0 14 usbhost3-4.1.4 3 0 xhci.0 13 "

	for vm in 100 101; do
		t=$T/node2/qmp/$vm.qmp
		# shellcheck disable=SC2086
		qemu_paused "$t" "$T/target.$vm.pid" $PVE_Q35 -incoming "unix:$T/mig.$vm.sock" \
			|| fail "target $vm did not start"
		VMPIDS="$VMPIDS $(cat "$T/target.$vm.pid")"
		PVE_MIGRATED_FROM=pve1 on_node2 us hook $vm post-start
		expect_rc 0
		expect_in "$OUT" "vm $vm: added qemu-xhci xhci on pci.1" "$vm: the hook adds the controller"
		expect_eq "$("$PEEK" "$t" usb | tr '\n' ' ')" "${published[$vm]}" "$vm: the hook adds the whole published set"
		migrate $vm "$T/mig.$vm.sock"
		# -S, like Proxmox's target: it waits for a cont once the stream is in.
		wait_until 5000 in_runstate "$t" paused \
			|| fail "$vm: the target did not take the stream (alive: $(is_qemu "$(cat "$T/target.$vm.pid")" && echo yes || echo no))"
		"$PEEK" "$t" run '{"execute":"cont"}' > /dev/null || fail "$vm: cont on the target"
		expect_eq "$(peek_status "$t")" "running" "$vm: the target runs the VM"
		expect_eq "$(peek_status "$T/qmp/$vm.qmp")" "postmigrate" "$vm: the source handed it over"
		expect_eq "$("$PEEK" "$t" usb | tr '\n' ' ')" "${published[$vm]}" "$vm: the copies are still there"
	done

	# pve2 wants nothing for 100 (no config at all) and the webcam for 101.
	printf '3-4.4\n' > "$T/node2/cfg/101.usb.conf"
	on_node2 us reconcile --all
	expect_rc 0
	expect_eq "$("$PEEK" "$T/node2/qmp/100.qmp" usb)" "" "100: the copies are gone"
	expect_eq "$("$PEEK" "$T/node2/qmp/101.qmp" usb | tr '\n' ' ')" "usbhost3-4.4 3 4.4 xhci.0 15 " "101: pve2's own set"
	for vm in 100 101; do
		expect_eq "$("$PEEK" "$T/node2/qmp/$vm.qmp" run \
			'{"execute":"qom-get","arguments":{"path":"/machine/peripheral/xhci","property":"type"}}')" \
			'"qemu-xhci"' "$vm: the controller stays"
		expect_eq "$(peek_status "$T/node2/qmp/$vm.qmp")" "running" "$vm: still running"
	done
	expect_in "$(cat "$T/state/101.json")" '"node":"pve2"' "published by the new node"
	on_node2 us reconcile --all
	expect_in "$OUT" "in sync" "then a no-op"
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
