#!/usr/bin/env bash
# demo.sh: the capsec demo across VMs. Brings up the hmi VM and CAPSEC_NODES
# node VMs (default 2), runs the PLC on node1, starts the HMI's probe, moves
# the PLC node1 -> node2 -> node1, prints each move's summary and what the HMI
# saw (as `capsec-lab demo` does), the timings, and destroys everything, also
# on failure or Ctrl-C. Run as root, after `make build` and `make vagrant-box`.
#
#   demo.sh           the demo
#   demo.sh --test    the demo as a test: the same checks (every move says
#                     "moved"; the HMI saw 0 errors, 0 reconnects, one session,
#                     mbprobe --strict passed), ending in PASS or FAIL lines.
#                     Without --test a failed check also makes the exit code 1.
#   demo.sh --keep    leave the VMs up afterwards (then: demo.sh down)
#   demo.sh down      destroy what an earlier run left (VMs, libvirt networks)
#
# Environment: CAPSEC_NODES (2..3 here: at most 3 VMs on a 2-core machine),
# CAPSEC_MOVES (default 2), CAPSEC_SETTLE (seconds of probing before and
# between moves, default 3), CAPSEC_INTERVAL (probe poll interval, default 20ms).
set -euo pipefail
LOG_TAG=vagrant-demo
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly NODES=${CAPSEC_NODES:-2}
readonly MOVES=${CAPSEC_MOVES:-2}
readonly SETTLE=${CAPSEC_SETTLE:-3}
readonly INTERVAL=${CAPSEC_INTERVAL:-20ms}
readonly PLC_IP=10.78.0.50
readonly PLANT_NET=capsec-vagrant PLANT_BRIDGE=virbr-capsec
readonly MGMT_NET=capsec-vagrant-mgmt MGMT_BRIDGE=virbr-capsecm
export CAPSEC_NODES=$NODES

TEST=0 KEEP=0
FAILS=()

# ---- the lab's libvirt networks ------------------------------------------------------

# Defined here rather than by vagrant-libvirt so that their bridges have names a
# user can tell apart (vagrant-libvirt calls them virbrN). Transient: a host
# reboot removes them.
net_xml() {
	local name=$1 bridge=$2 ip=$3 dhcp=$4
	printf "<network>\n  <name>%s</name>\n  <bridge name='%s' stp='off' delay='0'/>\n" "$name" "$bridge"
	printf "  <ip address='%s' netmask='255.255.255.0'>%s</ip>\n</network>\n" "$ip" "$dhcp"
}

networks_up() {
	local x
	x=$(mktemp)
	net_xml "$PLANT_NET" "$PLANT_BRIDGE" 10.78.0.1 '' >"$x"
	virsh -q net-create "$x" >/dev/null || die "virsh net-create $PLANT_NET failed"
	net_xml "$MGMT_NET" "$MGMT_BRIDGE" 10.78.1.1 \
		"<dhcp><range start='10.78.1.100' end='10.78.1.199'/></dhcp>" >"$x"
	virsh -q net-create "$x" >/dev/null || die "virsh net-create $MGMT_NET failed"
	rm -f "$x"
}

networks_down() {
	local n
	for n in "$PLANT_NET" "$MGMT_NET"; do
		virsh -q net-destroy "$n" >/dev/null 2>&1 || true
		virsh -q net-undefine "$n" >/dev/null 2>&1 || true # a persistent one from Vagrant
	done
}

# down: destroy VMs and networks, whatever state they are in.
down() {
	log "destroying the VMs and networks"
	vagrant destroy -f >"$LAB_OUT/destroy.log" 2>&1 || {
		tail -n 5 "$LAB_OUT/destroy.log" >&2
		log "vagrant destroy failed; removing the domains with virsh"
	}
	# What vagrant destroy cannot see (its machine state lost) is still found by name.
	local d
	for d in $(virsh -q list --all --name 2>/dev/null | grep '^capsec-vagrant-' || true); do
		virsh -q destroy "$d" >/dev/null 2>&1 || true
		virsh -q undefine "$d" --remove-all-storage >/dev/null 2>&1 || true
	done
	networks_down
	local left
	left=$(virsh -q list --all --name 2>/dev/null | grep '^capsec-vagrant-' || true)
	left+=$(virsh -q net-list --all --name 2>/dev/null | grep '^capsec-vagrant' || true)
	if [[ -n $left ]]; then
		log "left behind: $left"
		return 1
	fi
	echo "== vagrant lab down: nothing left behind"
}

# ---- talking to the VMs --------------------------------------------------------------

# on VM CMD: run CMD in VM over `vagrant ssh`; its stdout and stderr come back.
on() {
	local vm=$1
	shift
	vagrant ssh "$vm" --no-tty -c "$*" -- -o LogLevel=ERROR
}

preflight() {
	[[ $(id -u) == 0 ]] || die "run as root (sudo $0)"
	command -v vagrant >/dev/null || die "vagrant is missing: run vagrant/install-deps.sh"
	virsh version >/dev/null 2>&1 || die "libvirtd does not answer: run vagrant/install-deps.sh"
	[[ $NODES =~ ^[2-9]$ ]] || die "CAPSEC_NODES must be 2..9, got $NODES"
	((NODES <= 3)) || log "warning: $((NODES + 1)) VMs; a 2-core host is slow with more than 3"
	[[ -x $BIN/migrate ]] || die "$BIN/migrate is missing: run \`make build\`"
	if ! vagrant box list 2>/dev/null | grep -q "^$BOX_NAME "; then
		[[ -f $BOX_FILE ]] || die "no box $BOX_NAME and no $BOX_FILE: run \`make vagrant-box\`"
		vagrant box add --force --name "$BOX_NAME" "$BOX_FILE" >/dev/null || die "vagrant box add failed"
	fi
}

# ---- the demo ------------------------------------------------------------------------

fail() {
	FAILS+=("$*")
	log "FAIL: $*"
}

# json_int FILE KEY prints an integer field of mbprobe's indented JSON report.
json_int() { sed -n "s/^  \"$2\": \([0-9-]*\),\?$/\1/p" "$1" | head -n1; }

# json_count FILE KEY prints how many elements the array KEY has.
json_count() {
	awk -v k="\"$2\": [" 'index($0, k) { on = 1; if ($0 ~ /\[\]/) { print 0; exit }; next }
		on && /^  \]/ { print n + 0; exit } on { n++ }' "$1"
}

run_demo() {
	local t0 t_boot t_prov t_box='?' i from to out line rep=$LAB_OUT/probe.json
	local -a summaries=()
	[[ -f $LAB_OUT/box-build.seconds ]] && t_box=$(cat "$LAB_OUT/box-build.seconds")
	echo "== capsec vagrant lab: $NODES nodes + hmi on $PLANT_NET ($PLANT_BRIDGE, 10.78.0.0/24), accel $(lab_accel)"
	"$VAGRANT_DIR/provision.sh" --host-certs "$NODES"
	networks_up

	t0=$(now_s)
	vagrant up --no-provision >"$LAB_OUT/up.log" 2>&1 || {
		tail -n 30 "$LAB_OUT/up.log" >&2
		die "vagrant up failed (log: $LAB_OUT/up.log)"
	}
	t_boot=$(since "$t0")
	echo "== VMs booted in ${t_boot} s (vagrant up --no-provision, in parallel)"
	t0=$(now_s)
	vagrant provision >"$LAB_OUT/provision.log" 2>&1 || {
		tail -n 30 "$LAB_OUT/provision.log" >&2
		die "vagrant provision failed (log: $LAB_OUT/provision.log)"
	}
	t_prov=$(since "$t0")
	echo "== provisioned in ${t_prov} s: $(grep -c 'capsec-agent node[0-9]* up' "$LAB_OUT/provision.log") agents up"

	out=$(on node1 "sudo migrate run plc1 --image plcsim --ip $PLC_IP/24") || die "migrate run on node1: $out"
	echo "== $out"
	# The probe runs detached in the hmi VM; its exit code says whether the
	# session held (--strict), its JSON report is read at the end.
	on hmi "rm -f /tmp/probe.*; setsid sh -c 'mbprobe --target $PLC_IP:502 --interval $INTERVAL --duration 0 --timeout 30s --strict --json /tmp/probe.json >/tmp/probe.log 2>&1; echo \$? >/tmp/probe.rc' </dev/null >/dev/null 2>&1 & echo \$! >/tmp/probe.pid" ||
		die "could not start mbprobe on hmi"
	echo "== HMI polling $PLC_IP:502 every $INTERVAL over one Modbus TCP session"
	sleep "$SETTLE"

	from=1
	for ((i = 1; i <= MOVES; i++)); do
		to=$((from == 1 ? 2 : 1))
		# The progress lines (stderr) go to a log; the summary is the last stdout line.
		out=$(on "node$from" "sudo migrate move plc1 --to node$to 2>/tmp/move.log; rc=\$?; cat /tmp/move.log >&2; exit \$rc" \
			2>"$LAB_OUT/move-$i.log") || true
		line=$(grep -E '^(moved|NOT moved|FAILED)' <<<"$out" | tail -n1)
		[[ -n $line ]] || line="no result from migrate move on node$from: $out"
		echo "move $i: $line"
		summaries+=("$line")
		[[ $line == moved* ]] || {
			sed 's/^/    /' "$LAB_OUT/move-$i.log"
			fail "move $i node$from -> node$to: $line"
			break
		}
		from=$to
		sleep "$SETTLE"
	done

	# shellcheck disable=SC2016 # expanded in the hmi VM
	on hmi 'sudo kill -INT $(pgrep -x mbprobe) 2>/dev/null; for i in $(seq 100); do [ -f /tmp/probe.rc ] && break; sleep 0.2; done; cat /tmp/probe.rc' >"$LAB_OUT/probe.rc" 2>/dev/null || true
	on hmi 'cat /tmp/probe.json' >"$rep" 2>/dev/null || true
	echo "== what the HMI saw"
	on hmi 'cat /tmp/probe.log' 2>/dev/null | grep -v '^time=' || true

	local errors reconnects sessions
	errors=$(json_int "$rep" errors)
	reconnects=$(json_int "$rep" reconnects)
	sessions=$(json_count "$rep" local_ports)
	echo "== timings: box build ${t_box} s, boot ${t_boot} s, provision ${t_prov} s"
	i=0
	for line in "${summaries[@]}"; do
		i=$((i + 1))
		echo "   move $i: $(grep -oE '(node[0-9]+ → node[0-9]+|downtime [0-9.]+ ?[a-zµ]+|total [0-9.]+ ?[a-zµ]+)' <<<"$line" | paste -sd' ' || echo '?')"
	done

	[[ ${errors:-x} == 0 ]] || fail "the HMI saw ${errors:-no report of} errors"
	[[ ${reconnects:-x} == 0 ]] || fail "the HMI reconnected ${reconnects:-?} times"
	[[ ${sessions:-x} == 1 ]] || fail "the HMI used ${sessions:-?} sessions, want 1"
	[[ $(tr -d '[:space:]' <"$LAB_OUT/probe.rc") == 0 ]] || fail "mbprobe --strict exited $(cat "$LAB_OUT/probe.rc")"
	((${#summaries[@]} == MOVES)) || fail "${#summaries[@]} of $MOVES moves ran"
}

main() {
	case ${1:-} in
	down)
		preflight
		down
		return
		;;
	esac
	while (($#)); do
		case $1 in
		--test) TEST=1 ;;
		--keep) KEEP=1 ;;
		*) die "unknown argument '$1' (demo.sh [--test] [--keep] | demo.sh down)" ;;
		esac
		shift
	done
	preflight
	mkdir -p "$LAB_OUT"
	down >/dev/null 2>&1 || true # what a crashed run left
	if ((!KEEP)); then
		# shellcheck disable=SC2154 # rc is the trap's own
		trap 'rc=$?; down || rc=1; exit $rc' EXIT
		trap 'exit 130' INT TERM
	fi
	local t0
	t0=$(now_s)
	run_demo
	echo "== demo took $(since "$t0") s"
	if ((${#FAILS[@]})); then
		printf 'FAIL: %s\n' "${FAILS[@]}"
		return 1
	fi
	((TEST)) && echo "PASS: every move moved; the HMI saw 0 errors, 0 reconnects, one session"
	return 0
}

main "$@"
