# tests/lib.sh - shell helpers shared by integration.sh, bench/bench.sh and
# scripts/demo.  Source it; it defines functions only.

# qemu_paused SOCKET PIDFILE [qemu -device args...]: a paused q35 VM with
# no guest, daemonized, whose QMP monitor listens on SOCKET; its pid goes
# to PIDFILE.  Default device: one qemu-xhci with id xhci.  QEMU gets no
# inherited fd beyond stdio (a test's pipes would be held open by it).
qemu_paused() {
	local sock=$1 pidfile=$2
	shift 2
	[ $# -gt 0 ] || set -- -device qemu-xhci,id=xhci
	qemu-system-x86_64 -machine q35 -nodefaults -S -display none -m 32 "$@" \
		-qmp "unix:$sock,server=on,wait=off" \
		-daemonize -pidfile "$pidfile" > /dev/null 3>&-
}

# is_qemu PID: PID is (still) a QEMU process, not one that reused its pid.
is_qemu() {
	case $(cat "/proc/$1/comm" 2>/dev/null) in qemu-system*) return 0 ;; esac
	return 1
}
