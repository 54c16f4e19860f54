# shellcheck shell=bash
# provision_check.sh: the unit checks behind `provision.sh --check` (sourced by it).
# They run provision.sh itself, on the host, without VMs: argument parsing, the
# agent's command line, and the files it writes (under a scratch --root).

CHECK_FAILS=0
CHECK_RUNS=0

# expect NAME WANT_RC WANT_TEXT -- ARGS...: run the script with ARGS; its exit code
# must be WANT_RC and its output (stdout and stderr) must contain WANT_TEXT.
expect() {
	local name=$1 want_rc=$2 want=$3 out rc=0
	shift 4
	CHECK_RUNS=$((CHECK_RUNS + 1))
	out=$("$SCRIPT" "$@" 2>&1) || rc=$?
	if [[ $rc != "$want_rc" || $out != *"$want"* ]]; then
		printf 'FAIL %s: rc %s (want %s), output:\n%s\nwant it to contain: %s\n' \
			"$name" "$rc" "$want_rc" "$out" "$want"
		CHECK_FAILS=$((CHECK_FAILS + 1))
	else
		printf 'ok   %s\n' "$name"
	fi
}

# file_has NAME FILE TEXT: FILE exists and contains TEXT.
file_has() {
	CHECK_RUNS=$((CHECK_RUNS + 1))
	if [[ -f $2 ]] && grep -qF -- "$3" "$2"; then
		printf 'ok   %s\n' "$1"
	else
		printf 'FAIL %s: %s lacks %q\n' "$1" "$2" "$3"
		[[ -f $2 ]] && sed 's/^/    /' "$2"
		CHECK_FAILS=$((CHECK_FAILS + 1))
	fi
}

run_checks() {
	SCRIPT=$1
	local tmp mac=52:54:00:78:00:0b
	tmp=$(mktemp -d)
	# shellcheck disable=SC2064 # expand tmp now
	trap "rm -rf '$tmp'" RETURN
	local node=(--role node --node node1 --ip 10.78.0.11/24 --nic-mac "$mac" --certs "$tmp/certs"
		--peer node2=10.78.0.12:7443)

	# Parsing: what a user gets wrong, and what the Vagrantfile passes.
	expect "agent command line" 0 \
		"/usr/local/bin/capsec-agent --node node1 --listen 10.78.0.11:7443 --cert /etc/capsec/node1.pem --key /etc/capsec/node1.key --ca /etc/capsec/ca.pem --peer node2=10.78.0.12:7443 --bridge capsec-br --import plcsim=/usr/local/share/capsec/images/plcsim --state-dir /var/lib/capsec --tmpfs-mib 512" \
		-- "${node[@]}" --print
	expect "two peers, own port" 0 "--listen 10.78.0.11:7000 --cert /etc/capsec/node1.pem --key /etc/capsec/node1.key --ca /etc/capsec/ca.pem --peer node2=10.78.0.12:7443 --peer node3=10.78.0.13:7443" \
		-- "${node[@]}" --peer node3=10.78.0.13:7443 --port 7000 --print
	expect "MAC is lower-cased" 0 "capsec-agent" -- "${node[@]/$mac/52:54:00:78:00:0B}" --print
	expect "no role" 1 "--role is required" -- --ip 10.78.0.11/24 --nic-mac "$mac"
	expect "bad role" 1 "--role must be node or hmi" -- --role plc --ip 10.78.0.11/24 --nic-mac "$mac"
	expect "no ip" 1 "--ip is required" -- --role hmi --nic-mac "$mac"
	expect "ip without prefix" 1 "not an IPv4 address in CIDR form" -- --role hmi --ip 10.78.0.10 --nic-mac "$mac"
	expect "ip octet too big" 1 "not an IPv4 address" -- --role hmi --ip 10.78.0.300/24 --nic-mac "$mac"
	expect "bad mac" 1 "is not a MAC address" -- --role hmi --ip 10.78.0.10/24 --nic-mac 52:54:00:78:00
	expect "flag without value" 1 "--ip needs a value" -- --role hmi --ip
	expect "unknown flag" 1 "unknown argument '--bogus'" -- --role hmi --bogus
	expect "node without name" 1 "needs --node NAME" -- --role node --ip 10.78.0.11/24 --nic-mac "$mac"
	expect "bad node name" 1 "must be lower-case" -- "${node[@]/node1/Node_1}" --print
	expect "node without peer" 1 "at least one --peer" -- --role node --node node1 --ip 10.78.0.11/24 \
		--nic-mac "$mac" --certs "$tmp/certs"
	expect "peer without address" 1 "must be NODE=HOST:PORT" -- "${node[@]}" --peer node3 --print
	expect "peer is self" 1 "names this node itself" -- "${node[@]}" --peer node1=10.78.0.11:7443 --print
	expect "bad port" 1 "is not a port number" -- "${node[@]}" --port 70000 --print
	expect "hmi with peer" 1 "are for --role node" -- --role hmi --ip 10.78.0.10/24 --nic-mac "$mac" \
		--peer node2=10.78.0.12:7443
	expect "hmi has no agent" 1 "only nodes run an agent" -- --role hmi --ip 10.78.0.10/24 --nic-mac "$mac" --print
	expect "host-certs bad count" 1 "2..9" -- --host-certs 1

	# Files: a node, written under a scratch root.
	mkdir -p "$tmp/certs/nested"
	for f in ca.pem node1.pem; do echo "$f" >"$tmp/certs/$f"; done
	echo key >"$tmp/certs/nested/node1.key" # the file provisioner nests on a re-upload
	expect "node files" 0 "" -- "${node[@]}" --root "$tmp/n" --no-apply
	local n=$tmp/n/etc
	file_has "bridge netdev" "$n/systemd/network/20-capsec-br.netdev" "Kind=bridge"
	file_has "NIC joins the bridge" "$n/systemd/network/20-capsec-plant.network" "Bridge=capsec-br"
	file_has "NIC matched by MAC" "$n/systemd/network/20-capsec-plant.network" "MACAddress=$mac"
	file_has "address on the bridge" "$n/systemd/network/21-capsec-br.network" "Address=10.78.0.11/24"
	file_has "unit runs the agent" "$n/systemd/system/capsec-agent.service" \
		"ExecStart=/usr/local/bin/capsec-agent --node node1 --listen 10.78.0.11:7443"
	file_has "unit keeps containers on restart" "$n/systemd/system/capsec-agent.service" "KillMode=process"
	file_has "key installed" "$n/capsec/node1.key" "key"
	CHECK_RUNS=$((CHECK_RUNS + 1))
	if [[ $(stat -c %a "$n/capsec/node1.key") == 600 && $(stat -c %a "$n/capsec") == 700 ]]; then
		echo "ok   key and /etc/capsec are root's only"
	else
		echo "FAIL key mode $(stat -c %a "$n/capsec/node1.key"), dir mode $(stat -c %a "$n/capsec")"
		CHECK_FAILS=$((CHECK_FAILS + 1))
	fi
	expect "missing certificate" 1 "no ca.pem in" -- "${node[@]/$tmp\/certs/$tmp/none}" --root "$tmp/m" --no-apply

	# Files: the HMI, no bridge and no agent.
	expect "hmi files" 0 "" -- --role hmi --ip 10.78.0.10/24 --nic-mac 52:54:00:78:00:0a --root "$tmp/h" --no-apply
	file_has "hmi address on the NIC" "$tmp/h/etc/systemd/network/20-capsec-plant.network" "Address=10.78.0.10/24"
	CHECK_RUNS=$((CHECK_RUNS + 1))
	if [[ ! -e $tmp/h/etc/systemd/network/20-capsec-br.netdev && ! -e $tmp/h/etc/systemd/system/capsec-agent.service ]]; then
		echo "ok   hmi has no bridge and no agent"
	else
		echo "FAIL hmi got a bridge or an agent unit"
		CHECK_FAILS=$((CHECK_FAILS + 1))
	fi

	# The host's certificates, when migrate is built (skipped otherwise).
	local migrate
	migrate=${CAPSEC_MIGRATE:-$(cd "$(dirname "$SCRIPT")/.." && pwd)/_output/bin/migrate}
	if [[ -x $migrate ]]; then
		expect "host certs" 0 "node1..node3" -- --host-certs 3 --out "$tmp/out"
		expect "host certs again (idempotent)" 0 "node1..node3" -- --host-certs 3 --out "$tmp/out"
		file_has "node3 cert" "$tmp/out/certs/node3/node3.pem" "BEGIN CERTIFICATE"
		file_has "node3 has the CA cert" "$tmp/out/certs/node3/ca.pem" "BEGIN CERTIFICATE"
		CHECK_RUNS=$((CHECK_RUNS + 1))
		if [[ ! -e $tmp/out/certs/node3/ca.key ]]; then
			echo "ok   the CA key stays out of the nodes' directories"
		else
			echo "FAIL ca.key copied to a node"
			CHECK_FAILS=$((CHECK_FAILS + 1))
		fi
	else
		echo "skip host certs: $migrate not built"
	fi

	printf '%d checks, %d failed\n' "$CHECK_RUNS" "$CHECK_FAILS"
	((CHECK_FAILS == 0))
}
