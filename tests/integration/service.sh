# tests/integration/service.sh - usbsync as the host runs it: udev runs and
# the run lock, watch, the Proxmox hook and hookscript, make install, the
# systemd units and udev rule.
# Sourced by tests/integration.sh, whose helpers and runner these tests use.
# shellcheck shell=bash

# ---- udev runs and the run lock ----------------------------------------------

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
	# How many runs the burst makes depends on how far apart the 40
	# processes start: within a run and its 1 s settle, one more.  The
	# sanitized pass (IT_TIME_SCALE 3) starts each far slower, and a CI
	# run there once saw 5 with other work on the machine.
	[ "$ran" -le $(( 3 * ${IT_TIME_SCALE:-1} )) ] || fail "$ran runs talked to QEMU"
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

# ---- watch -------------------------------------------------------------------

# has_ids VM "ID ...": the VM holds exactly those usb-host ids (for wait_until)
has_ids() { [ "$(usb_ids "$1")" = "$2" ]; }

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

# ---- the Proxmox hook and hookscript -----------------------------------------

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

# ---- installed files ---------------------------------------------------------

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
