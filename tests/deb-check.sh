#!/bin/bash
# deb-check.sh DEB: install, upgrade, remove and purge the usbsync package
# on this machine as an admin would (dpkg -i, dpkg -i of a newer version,
# dpkg -r, dpkg -P), checking after each step what is where, and that the
# machine ends as it began: every path named *usbsync* under /etc, /usr and
# /var/lib is compared before and after (not /run: other checkouts' runs
# may use /run/usbsync meanwhile, and the test's own run locks elsewhere).
#
# Needs root.  Skipped, loudly, when usbsync is already installed (it is
# not ours to remove) or has left a history here (the purge would delete
# it), and where systemd runs (installing starts the timer,
# which would reconcile this host's real VMs) unless
# USBSYNC_DEB_CHECK=force.  Runs are serialized machine-wide (other
# checkouts run the same test), and dpkg is retried while apt holds its
# lock.
set -euo pipefail

deb=$(realpath "$1")
pass=0 fail=0
ok() { echo "  ok   $*"; pass=$((pass + 1)); }
bad() { echo "  FAIL $*"; fail=$((fail + 1)); }
check() { # check DESCRIPTION COMMAND...
	local what=$1
	shift
	if "$@" >/dev/null 2>&1; then ok "$what"; else bad "$what"; fi
}
skip() {
	echo "deb-check: SKIPPED: $*"
	echo "deb-check: 0 passed, 0 failed, 1 skipped"
	exit 0
}

[ "$(id -u)" -eq 0 ] || skip "needs root (dpkg -i)"
if [ -d /run/systemd/system ] && [ "${USBSYNC_DEB_CHECK:-}" != force ]; then
	skip "systemd runs here: installing would start the timer on this host's VMs (USBSYNC_DEB_CHECK=force to run anyway)"
fi

exec 9>/run/lock/usbsync-deb-check.lock
flock -w 900 9 || { echo "deb-check: another deb-check held the lock for 15 minutes" >&2; exit 1; }

status() { dpkg-query -W -f='${Status}' usbsync 2>/dev/null || true; }
case $(status) in
'' | *not-installed) ;;
*) skip "usbsync is installed here ($(status)); not touching it" ;;
esac

# The test's run creates these and the purge removes them: someone's
# history is not ours to delete.
[ ! -e /var/lib/usbsync ] || skip "/var/lib/usbsync exists (a purge would delete it)"

tmp=$(mktemp -d)
installed=no
cleanup() {
	[ "$installed" = no ] || dpkg_retry -P usbsync >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT

# dpkg, retried for up to 5 minutes while another apt/dpkg holds its lock.
dpkg_retry() {
	local i
	for ((i = 0; i < 150; i++)); do
		if dpkg "$@" >"$tmp/dpkg.log" 2>&1; then
			return 0
		fi
		grep -q 'lock' "$tmp/dpkg.log" || { cat "$tmp/dpkg.log" >&2; return 1; }
		sleep 2
	done
	cat "$tmp/dpkg.log" >&2
	return 1
}

ours() { find /etc /usr /var/lib -name '*usbsync*' 2>/dev/null | LC_ALL=C sort; }
ours >"$tmp/before"

version=$(dpkg-deb -f "$deb" Version)
wants=/etc/systemd/system/timers.target.wants/usbsync-reconcile.timer

echo "deb-check: $deb"
# ---- install ---------------------------------------------------------------
installed=yes
check "dpkg -i succeeds without systemd as PID 1" dpkg_retry -i "$deb"
check "the package is installed" test "$(status)" = "install ok installed"
check "usbsync --version is the package's version ($version)" \
	test "$(/usr/sbin/usbsync --version)" = "usbsync $version"
check "the man page names the same version" \
	sh -c "zcat /usr/share/man/man8/usbsync.8.gz | head -1 | grep -qF '\"usbsync $version\"'"
mkdir -m 0700 "$tmp/conf"
check "usbsync tree runs" sh -c "/usr/sbin/usbsync tree --config-dir '$tmp/conf' | grep -q '^PORT'"
check "binary in /usr/sbin" test -x /usr/sbin/usbsync
check "udev rule in /lib/udev/rules.d, naming /usr/sbin/usbsync" \
	grep -q ' /usr/sbin/usbsync reconcile' /lib/udev/rules.d/90-usbsync.rules
for unit in usbsync-reconcile.service usbsync-reconcile.timer usbsync-watch.service; do
	check "$unit in /lib/systemd/system" test -f "/lib/systemd/system/$unit"
done
check "units run /usr/sbin/usbsync" grep -q '^ExecStart=/usr/sbin/usbsync ' \
	/lib/systemd/system/usbsync-reconcile.service
check "the timer is enabled" test "$(readlink "$wants")" = /lib/systemd/system/usbsync-reconcile.timer
check "the watch service is not enabled" \
	test ! -e /etc/systemd/system/multi-user.target.wants/usbsync-watch.service
check "hookscript in /usr/share/usbsync, executable" test -x /usr/share/usbsync/usbsync-hookscript
check "hookscript calls /usr/sbin/usbsync" grep -q '/usr/sbin/usbsync' /usr/share/usbsync/usbsync-hookscript
check "example defaults in /usr/share/usbsync" test -f /usr/share/usbsync/usbsync.default
check "/etc/default/usbsync is a conffile" \
	sh -c "dpkg-query -W -f='\${Conffiles}' usbsync | grep -q '^ /etc/default/usbsync '"
check "bash completion installed where bash-completion loads it on demand" \
	bash -c '. /usr/share/bash-completion/bash_completion; __load_completion usbsync &&
		complete -p usbsync | grep -q "_usbsync usbsync"'
check "the library it loads is declared (libsqlite3-0)" \
	sh -c "dpkg-query -W -f='\${Depends}' usbsync | grep -q libsqlite3-0"
# A run as the timer's would: creates /var/lib/usbsync (its locks go in
# the test's own dir).
check "a reconcile run works" /usr/sbin/usbsync reconcile --trigger timer \
	--config-dir "$tmp/conf" --qmp-dir "$tmp/conf" --run-dir "$tmp/run"
check "the run left its time in /var/lib/usbsync" test -e /var/lib/usbsync/history.db-last-run

# ---- upgrade, keeping an admin's change to the conffile ----------------------
echo 'USBSYNC_TIMEOUT=5 # deb-check' >>/etc/default/usbsync
dpkg-deb -R "$deb" "$tmp/next"
sed -i "s/^Version: .*/Version: $version+next1/" "$tmp/next/DEBIAN/control"
dpkg-deb --root-owner-group -b "$tmp/next" "$tmp/next.deb" >/dev/null
check "dpkg -i of a newer version (upgrade) succeeds" dpkg_retry -i "$tmp/next.deb"
check "the newer version is installed" \
	test "$(dpkg-query -W -f='${Version}' usbsync)" = "$version+next1"
check "the admin's change to /etc/default/usbsync survives the upgrade" \
	grep -q '# deb-check' /etc/default/usbsync
check "the timer is still enabled" test -L "$wants"

# ---- remove: conffiles and data stay ---------------------------------------
check "dpkg -r succeeds" dpkg_retry -r usbsync
check "removed, config files kept" test "$(status)" = "deinstall ok config-files"
check "binary gone" test ! -e /usr/sbin/usbsync
check "units gone" sh -c '! ls /lib/systemd/system/usbsync-* 2>/dev/null'
check "udev rule gone" test ! -e /lib/udev/rules.d/90-usbsync.rules
check "/etc/default/usbsync kept" test -f /etc/default/usbsync
check "history kept" test -d /var/lib/usbsync

# ---- purge: nothing left ---------------------------------------------------
check "dpkg -P succeeds" dpkg_retry -P usbsync
installed=no
check "purged: dpkg knows no usbsync" sh -c "! dpkg-query -W usbsync"
ours >"$tmp/after"
if diff -u "$tmp/before" "$tmp/after" >"$tmp/diff"; then
	ok "nothing named usbsync left under /etc /usr /var/lib that was not there before"
else
	bad "left behind:"
	sed -n 's/^+\//    \//p' "$tmp/diff"
fi

echo "deb-check: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
