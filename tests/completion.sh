#!/bin/bash
# completion.sh BIN [TREE]: the bash completion (scripts/usbsync.bash-completion)
# as bash calls it: `complete -p` names the function, and each case sets
# COMP_WORDS/COMP_CWORD as readline would and checks COMPREPLY.  Every
# command and option BIN's --help names must be offered.  Host ports and
# ids come from TREE (a umockdev tree, default tests/trees/blog.umockdev):
# the script re-runs itself under umockdev-run.
set -euo pipefail
bin=$(realpath "$1")
cd "$(dirname "$0")/.."
tree=${2:-tests/trees/blog.umockdev}
if [ -z "${USBSYNC_COMPLETION_INNER:-}" ]; then
	USBSYNC_COMPLETION_INNER=1 exec umockdev-run -d "$tree" -- bash "$0" "$bin" "$tree"
fi

# shellcheck source=../scripts/usbsync.bash-completion
. scripts/usbsync.bash-completion
pass=0 fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/conf"
touch "$tmp/conf/100.usb.conf" "$tmp/conf/web-1.usb.conf" "$tmp/conf/101.conf" \
	"$tmp/conf/bad name.usb.conf" "$tmp/conf/x\$(id).usb.conf"

# expect "WANTED WORDS" WORD...: complete the last WORD of `usbsync WORD...`.
expect() {
	local want=$1 got
	shift
	COMP_WORDS=(usbsync "$@")
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	COMPREPLY=()
	_usbsync
	got=$(printf '%s\n' "${COMPREPLY[@]}" | LC_ALL=C sort | tr '\n' ' ')
	want=$(printf '%s\n' $want | LC_ALL=C sort | tr '\n' ' ')
	if [ "$got" = "$want" ]; then
		echo "  ok   usbsync $*"
		pass=$((pass + 1))
	else
		echo "  FAIL usbsync $*|: want '$want', got '$got'"
		fail=$((fail + 1))
	fi
}

if [ "$(complete -p usbsync)" = "complete -F _usbsync usbsync" ]; then
	echo "  ok   complete -p usbsync names _usbsync"
	pass=$((pass + 1))
else
	echo "  FAIL complete -p usbsync: $(complete -p usbsync 2>&1)"
	fail=$((fail + 1))
fi

expect "reconcile status metrics history hook watch tree version" ""
expect "reconcile" re
expect "history hook" h
expect "--config-dir --qmp-dir --db --run-dir --timeout --lock-wait --node --mapping-file --state-dir --help --version" -
expect "--dry-run --db" reconcile --d
expect "--vm" status --v
expect "--textfile-dir" metrics --te
expect "--json" tree --j
expect "udev timer hook manual" reconcile --trigger ""
expect "timer" reconcile --trigger t
# VM names: <vm>.usb.conf files with valid names, from --config-dir ...
expect "100 web-1" --config-dir "$tmp/conf" status --vm ""
expect "web-1" status --config-dir="$tmp/conf" --vm w
# ... or USBSYNC_CONFIG_DIR, and a missing dir gives nothing.
USBSYNC_CONFIG_DIR=$tmp/conf expect "100 web-1" reconcile --vm ""
expect "" --config-dir "$tmp/none" status --vm ""
# hook VM PHASE
USBSYNC_CONFIG_DIR=$tmp/conf expect "100" hook 1
expect "post-start post-stop" hook 100 post
expect "" hook 100 post-start ""
# Host ports (never root hubs or interfaces) and vendor:product ids.
expect "3-4 3-4.1 3-4.1.1 3-4.1.2 3-4.1.4 3-4.4" history --port 3-
expect "1-1 1-2" history --port 1
expect "046d:c52b" history --device 046d:c
# The global options' values are not taken for the subcommand.
expect "--json" --db /x status --j
expect "" watch --sweep ""
expect "--json" --node pve1 tree --j

# Nothing the binary has is missing from the completion.
offered() { # offered WORD...: what completing `usbsync WORD...` offers
	COMP_WORDS=(usbsync "$@")
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	COMPREPLY=()
	_usbsync
	printf ' %s ' "${COMPREPLY[@]}"
}
missing=""
all=$(offered "")
globals=$(offered -)
for o in $("$bin" --help | sed -n '/^global options/,/^$/p' | grep -o -- '^  --[a-z][a-z-]*'); do
	[[ $globals == *" $o "* ]] || missing="$missing global:$o"
done
for cmd in $("$bin" --help | sed -n '/^commands:/,/^$/p' | awk 'NF > 1 {print $1}'); do
	[[ $all == *" $cmd "* ]] || missing="$missing $cmd"
	opts=$(offered "$cmd" --)
	for o in $("$bin" "$cmd" --help 2>&1 | grep -o -- '--[a-z][a-z-]*' | sort -u); do
		[[ $opts == *" $o "* ]] || missing="$missing $cmd:$o"
	done
done
if [ -z "$missing" ]; then
	echo "  ok   every command and option in usbsync's --help is completed"
	pass=$((pass + 1))
else
	echo "  FAIL not completed:$missing"
	fail=$((fail + 1))
fi

echo "completion: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
