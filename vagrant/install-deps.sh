#!/usr/bin/env bash
# install-deps.sh: the host side of the Vagrant lab, for `make vagrant-box` and
# `make vagrant-demo`. Run as root on Debian 12. Idempotent: a second run checks,
# prints and downloads nothing.
#
#  1. Debian packages: Vagrant 2.3 with the vagrant-libvirt plugin, libvirt and QEMU
#     (software emulation works; KVM is used by nobody here, see the Vagrantfile),
#     qemu-img, debootstrap and mkfs.ext4 for the offline box.
#  2. libvirt's daemons. Where systemd runs they are its units; on a machine without
#     systemd (containers, some CI runners) virtlogd and libvirtd are started by hand.
#
# Note: libvirt-daemon-system depends on iptables (libvirt 9 writes its network
# rules with it), so this installs the iptables binary (the nft backend on Debian 12).
set -euo pipefail

readonly PKGS=(vagrant vagrant-libvirt libvirt-daemon-system libvirt-clients
	qemu-system-x86 qemu-utils seabios ipxe-qemu dnsmasq-base debootstrap e2fsprogs
	ca-certificates)

log() { printf 'vagrant-deps: %s\n' "$*"; }
die() {
	printf 'vagrant-deps: error: %s\n' "$*" >&2
	exit 1
}

install_packages() {
	local missing=() p
	for p in "${PKGS[@]}"; do
		[[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) == installed ]] ||
			missing+=("$p")
	done
	if ((${#missing[@]} == 0)); then
		log "debian packages: all ${#PKGS[@]} present"
		return
	fi
	log "debian packages: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# Recommends would bring NFS server and libguestfs (hundreds of MB) for features
	# the lab does not use (it has no synced folders).
	if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
		apt-get update -qq || die "apt-get update failed"
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
			die "apt-get install ${missing[*]} failed"
	fi
}

has_systemd() { [[ -d /run/systemd/system ]]; }

running() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_daemons() {
	if has_systemd; then
		systemctl start virtlogd.socket libvirtd.socket libvirtd.service ||
			die "systemctl start libvirtd failed"
	else
		# Without systemd nobody starts them: -d daemonises, each writes its pid file.
		running /run/virtlogd.pid || virtlogd -d || die "virtlogd -d failed"
		running /run/libvirtd.pid || libvirtd -d || die "libvirtd -d failed"
	fi
	local _
	for _ in $(seq 50); do
		virsh -c qemu:///system version >/dev/null 2>&1 && break
		sleep 0.2
	done
	virsh -c qemu:///system version >/dev/null 2>&1 ||
		die "libvirtd does not answer on qemu:///system"
	log "libvirt: $(virsh -c qemu:///system version 2>/dev/null | awk '/Running hypervisor/ {print $3, $4}')" \
		"running ($(has_systemd && echo systemd || echo 'started by hand'))"
}

kvm_note() {
	# /dev/kvm alone is not enough: a PVM host (kvm_pvm) offers /dev/kvm, but QEMU
	# aborts on it with "failed to set MSR 0x10a". The Vagrantfile makes the same test.
	if [[ -e /dev/kvm && ! -d /sys/module/kvm_pvm ]] && grep -qwE 'vmx|svm' /proc/cpuinfo; then
		log "kvm: usable: the VMs use KVM (fast)"
	else
		log "kvm: not usable (no /dev/kvm, no vmx/svm, or PVM): the VMs run under TCG (slow)"
	fi
}

main() {
	[[ $(id -u) == 0 ]] || die "run as root (sudo $0)"
	command -v dpkg >/dev/null || die "this script needs a Debian-based system (no dpkg)"
	install_packages
	start_daemons
	kvm_note
	log "ok: $(vagrant --version 2>/dev/null), vagrant-libvirt $(dpkg-query -W -f='${Version}' vagrant-libvirt)"
}

main "$@"
