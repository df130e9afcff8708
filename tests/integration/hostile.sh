# tests/integration/hostile.sh - input usbsync must not trust: device
# strings, options and environment, config files, the udev environment; a
# disk the host uses is never passed through.
# Sourced by tests/integration.sh, whose helpers and runner these tests use.
# shellcheck shell=bash

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

test_bad_global_options_and_env_are_usage_errors() {
	USBSYNC_TIMEOUT=abc us reconcile; expect_rc 2
	us --timeout 0 reconcile; expect_rc 2
	us reconcile --vm '../etc'; expect_rc 2
	us frobnicate; expect_rc 2
	us reconcile --config-dir "$T/nonexistent"; expect_rc 2
	expect_in "$ERR" "$T/nonexistent" "names the dir"
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
