#!/usr/bin/env bash
# provision.sh: the Vagrant lab's provisioning. Three modes:
#
#   In a VM (the Vagrantfile runs it as root):
#     provision.sh --role node --node node1 --ip 10.78.0.11/24 --nic-mac 52:54:00:78:00:0b \
#                  --certs /tmp/capsec-certs --peer node2=10.78.0.12:7443
#       joins the plant NIC to bridge capsec-br, puts the node's IP on the bridge
#       (systemd-networkd, so it survives a reboot), installs the certificates and
#       starts capsec-agent as the systemd unit capsec-agent.service.
#     provision.sh --role hmi --ip 10.78.0.10/24 --nic-mac 52:54:00:78:00:0a
#       puts the HMI's IP on its plant NIC; the probe is started by demo.sh.
#
#   On the host, before `vagrant up`:
#     provision.sh --host-certs N [--out DIR]
#       makes the lab CA (once) and node1..nodeN's certificates with
#       _output/bin/migrate ca init/issue, under DIR (default _output/vagrant).
#
#   On the host or in CI, without VMs:
#     provision.sh --check
#       unit checks of argument parsing and of the files and agent command line
#       this script generates.
#
# Other flags: --port N (agent port, 7443), --tmpfs-mib N (checkpoint tmpfs cap),
# --root DIR (write files under DIR instead of /), --no-apply (write files only:
# no networkctl, no systemctl), --print (print the agent's command line and exit).
set -euo pipefail

readonly BRIDGE=capsec-br
readonly AGENT_BIN=/usr/local/bin/capsec-agent
readonly IMAGE_DIR=/usr/local/share/capsec/images
readonly ETC=/etc/capsec
readonly UNIT=capsec-agent.service

log() { printf 'provision: %s\n' "$*" >&2; }
die() {
	printf 'provision: error: %s\n' "$*" >&2
	exit 1
}

# ---- arguments ----------------------------------------------------------------------

ROLE='' NODE='' IP='' NIC_MAC='' CERTS='' PORT=7443 TMPFS_MIB=512 ROOT='' APPLY=1 PRINT=0
PEERS=()

need_value() { [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value"; }

parse_args() {
	while (($#)); do
		case $1 in
		--role) need_value "$@"; ROLE=$2; shift ;;
		--node) need_value "$@"; NODE=$2; shift ;;
		--ip) need_value "$@"; IP=$2; shift ;;
		--nic-mac) need_value "$@"; NIC_MAC=${2,,}; shift ;;
		--certs) need_value "$@"; CERTS=$2; shift ;;
		--peer) need_value "$@"; PEERS+=("$2"); shift ;;
		--port) need_value "$@"; PORT=$2; shift ;;
		--tmpfs-mib) need_value "$@"; TMPFS_MIB=$2; shift ;;
		--root) need_value "$@"; ROOT=$2; shift ;;
		--no-apply) APPLY=0 ;;
		--print) PRINT=1 ;;
		*) die "unknown argument '$1' (see the header of $0)" ;;
		esac
		shift
	done
}

valid_cidr() {
	local re='^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})/([0-9]{1,2})$'
	[[ $1 =~ $re ]] || return 1
	local i
	for i in 1 2 3 4; do ((BASH_REMATCH[i] <= 255)) || return 1; done
	((BASH_REMATCH[5] >= 1 && BASH_REMATCH[5] <= 32))
}

valid_port() { [[ $1 =~ ^[0-9]+$ ]] && (($1 >= 1 && $1 <= 65535)); }

validate() {
	case $ROLE in
	node | hmi) ;;
	'') die "--role is required (node or hmi)" ;;
	*) die "--role must be node or hmi, got '$ROLE'" ;;
	esac
	[[ -n $IP ]] || die "--ip is required, e.g. --ip 10.78.0.11/24"
	valid_cidr "$IP" || die "--ip '$IP' is not an IPv4 address in CIDR form (e.g. 10.78.0.11/24)"
	[[ -n $NIC_MAC ]] || die "--nic-mac is required: the MAC of the plant network's NIC"
	[[ $NIC_MAC =~ ^([0-9a-f]{2}:){5}[0-9a-f]{2}$ ]] || die "--nic-mac '$NIC_MAC' is not a MAC address"
	valid_port "$PORT" || die "--port '$PORT' is not a port number"
	[[ $TMPFS_MIB =~ ^[1-9][0-9]*$ ]] || die "--tmpfs-mib '$TMPFS_MIB' is not a positive number"
	[[ $ROLE == node ]] || {
		[[ -z $NODE && ${#PEERS[@]} -eq 0 ]] || die "--node and --peer are for --role node"
		return 0
	}
	[[ -n $NODE ]] || die "--role node needs --node NAME"
	[[ $NODE =~ ^[a-z0-9][a-z0-9-]{0,62}$ ]] || die "--node '$NODE' must be lower-case letters, digits and '-'"
	[[ -n $CERTS ]] || die "--role node needs --certs DIR (ca.pem, $NODE.pem, $NODE.key)"
	((${#PEERS[@]})) || die "--role node needs at least one --peer NODE=HOST:PORT"
	local p name addr
	for p in "${PEERS[@]}"; do
		name=${p%%=*} addr=${p#*=}
		[[ $p == *=* && -n $name && $addr =~ ^[0-9.]+:[0-9]+$ ]] ||
			die "--peer '$p' must be NODE=HOST:PORT, e.g. node2=10.78.0.12:7443"
		[[ $name != "$NODE" ]] || die "--peer '$p' names this node itself"
		valid_port "${addr##*:}" || die "--peer '$p': bad port"
	done
}

# ---- what gets written ------------------------------------------------------------

# agent_args prints the agent's command line, one argument a line.
agent_args() {
	local ip=${IP%/*} p
	printf '%s\n' "$AGENT_BIN" --node "$NODE" --listen "$ip:$PORT" \
		--cert "$ETC/$NODE.pem" --key "$ETC/$NODE.key" --ca "$ETC/ca.pem"
	for p in "${PEERS[@]}"; do printf '%s\n' --peer "$p"; done
	printf '%s\n' --bridge "$BRIDGE" --import "plcsim=$IMAGE_DIR/plcsim" \
		--state-dir /var/lib/capsec --tmpfs-mib "$TMPFS_MIB"
}

agent_cmdline() { agent_args | paste -sd' '; }

write_networkd() {
	local d=$ROOT/etc/systemd/network
	mkdir -p "$d"
	if [[ $ROLE == hmi ]]; then
		printf '[Match]\nMACAddress=%s\n\n[Network]\nAddress=%s\nLinkLocalAddressing=no\nConfigureWithoutCarrier=yes\n' \
			"$NIC_MAC" "$IP" >"$d/20-capsec-plant.network"
		return
	fi
	# The agent puts each container's veth into this bridge; the NIC joins it
	# to the plant network, and the node's own address lives on the bridge.
	printf '[NetDev]\nName=%s\nKind=bridge\n\n[Bridge]\nSTP=no\n' "$BRIDGE" >"$d/20-capsec-br.netdev"
	printf '[Match]\nMACAddress=%s\nType=ether\n\n[Network]\nBridge=%s\n' "$NIC_MAC" "$BRIDGE" \
		>"$d/20-capsec-plant.network"
	printf '[Match]\nName=%s\n\n[Network]\nAddress=%s\nLinkLocalAddressing=no\nConfigureWithoutCarrier=yes\n' \
		"$BRIDGE" "$IP" >"$d/21-capsec-br.network"
}

write_unit() {
	local d=$ROOT/etc/systemd/system
	mkdir -p "$d"
	{
		printf '# Written by capsec vagrant/provision.sh.\n[Unit]\nDescription=capsec agent %s\n' "$NODE"
		printf 'After=systemd-networkd.service network-online.target\nWants=network-online.target\n\n'
		printf '[Service]\nExecStart=%s\n' "$(agent_cmdline)"
		# Until networkd has put the address on the bridge, the listen fails: retry.
		printf 'Restart=on-failure\nRestartSec=2\n'
		# Containers are the agent's children; an agent restart must not kill them.
		printf 'KillMode=process\nDelegate=yes\n\n'
		printf '[Install]\nWantedBy=multi-user.target\n'
	} >"$d/$UNIT"
}

# install_certs: the node's certificate and key and the CA's certificate. Vagrant's
# file provisioner nests the directory on a second upload, so search below it.
install_certs() {
	local f want
	mkdir -p "$ROOT$ETC"
	chmod 0700 "$ROOT$ETC"
	for want in ca.pem "$NODE.pem" "$NODE.key"; do
		f=$(find "$CERTS" -name "$want" -type f -print -quit 2>/dev/null) || true
		[[ -n $f ]] || die "no $want in $CERTS (make them with provision.sh --host-certs on the host)"
		install -m 0600 "$f" "$ROOT$ETC/$want"
	done
}

# ---- applying it in a VM ----------------------------------------------------------

wait_for_addr() {
	local dev=$1 ip=${IP%/*} i
	for i in $(seq 100); do
		ip -4 -o addr show dev "$dev" 2>/dev/null | grep -qw "$ip" && return 0
		sleep 0.3
	done
	die "$ip did not appear on $dev: $(networkctl status "$dev" 2>&1 | tail -n 5)"
}

# nic_by_mac MAC prints the name of the link with that MAC (not a bridge: once
# enslaved, the NIC's MAC may be the bridge's too).
nic_by_mac() {
	local n
	for n in /sys/class/net/*; do
		[[ -e $n/bridge ]] && continue
		if [[ $(cat "$n/address") == "$1" ]]; then
			basename "$n"
			return 0
		fi
	done
}

apply_network() {
	systemctl is-active -q systemd-networkd || die "systemd-networkd is not running (the capsec box runs it)"
	networkctl reload
	local nic
	nic=$(nic_by_mac "$NIC_MAC")
	[[ -n $nic ]] || die "no NIC with MAC $NIC_MAC: $(ip -br link)"
	networkctl reconfigure "$nic"
	if [[ $ROLE == hmi ]]; then
		wait_for_addr "$nic"
	else
		wait_for_addr "$BRIDGE"
		log "$nic is in $BRIDGE: $(ip -br addr show dev "$BRIDGE")"
	fi
}

apply_agent() {
	systemctl daemon-reload
	systemctl enable -q "$UNIT"
	systemctl restart "$UNIT"
	local i
	for i in $(seq 100); do
		migrate status >/dev/null 2>&1 && break
		sleep 0.3
	done
	migrate status >/dev/null 2>&1 || {
		journalctl -u "$UNIT" -n 20 --no-pager >&2 || true
		die "capsec-agent did not come up (journal above)"
	}
	log "capsec-agent $NODE up: $(migrate status 2>&1 | head -n 3 | paste -sd' ')"
}

provision_vm() {
	write_networkd
	if [[ $ROLE == node ]]; then
		install_certs
		write_unit
	fi
	((APPLY)) || return 0
	[[ $(id -u) == 0 ]] || die "run as root"
	apply_network
	[[ $ROLE == node ]] && apply_agent
	log "$ROLE ${NODE:-hmi} provisioned ($IP)"
}

# ---- on the host: certificates ----------------------------------------------------

host_certs() {
	local n=$1 out=${2:-} repo migrate i node
	if ! [[ $n =~ ^[0-9]+$ ]] || ((n < 2 || n > 9)); then
		die "--host-certs wants the number of nodes (2..9), got '$n'"
	fi
	repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
	out=${out:-${CAPSEC_OUT:-$repo/_output}/vagrant}
	migrate=${CAPSEC_MIGRATE:-$repo/_output/bin/migrate}
	[[ -x $migrate ]] || die "$migrate is missing: run \`make build\`"
	if [[ ! -f $out/ca/ca.pem ]]; then
		"$migrate" ca init --dir "$out/ca" >/dev/null || die "migrate ca init failed"
	fi
	for ((i = 1; i <= n; i++)); do
		node=node$i
		[[ -f $out/certs/$node/$node.pem ]] && continue
		mkdir -p "$out/certs/$node"
		"$migrate" ca issue "$node" --dir "$out/ca" --out "$out/certs/$node" \
			--ip "10.78.0.$((10 + i))" >/dev/null || die "migrate ca issue $node failed"
		cp "$out/ca/ca.pem" "$out/certs/$node/ca.pem"
	done
	log "certificates for node1..node$n in $out/certs (CA in $out/ca)"
}

main() {
	case ${1:-} in
	--check)
		# shellcheck source=provision_check.sh
		source "$(dirname "${BASH_SOURCE[0]}")/provision_check.sh"
		run_checks "$0"
		return
		;;
	--host-certs)
		[[ $# -eq 2 || ($# -eq 4 && $3 == --out) ]] || die "usage: $0 --host-certs N [--out DIR]"
		host_certs "$2" "${4:-}"
		return
		;;
	esac
	parse_args "$@"
	validate
	if ((PRINT)); then
		[[ $ROLE == node ]] || die "--print: only nodes run an agent"
		agent_cmdline
		return
	fi
	provision_vm
}

main "$@"
