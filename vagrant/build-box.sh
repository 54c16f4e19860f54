#!/usr/bin/env bash
# build-box.sh: build the Vagrant lab's box offline from Debian packages (no
# Vagrant Cloud): Debian 12 minbase, a kernel booted directly by QEMU (the
# image has no bootloader), the vagrant user, nftables (the agent locks a
# container's network with nft), and capsec baked in: its
# binaries, the plcsim image bundle and CRIU 4.2 from the host's
# /opt/capsec/criu. Writes _output/vagrant/capsec-bookworm.box and, when
# Vagrant is installed, adds it as capsec/bookworm. Run as root.
#
# Idempotent: the debootstrapped base is cached (keyed by suite, mirror and
# package list), so a rebuild after `make build` only redoes the capsec layer.
# A failed build leaves nothing behind but the cache.
#
# Environment:
#   CAPSEC_DEBIAN_MIRROR=URI   Debian mirror (default: the one the system's apt uses)
#   CAPSEC_BOX_DEBIAN_CRIU=1   also install Debian 12's own criu 3.17 as /usr/sbin/criu
#                              (to compare; the agent uses /opt/capsec/criu)
#   CAPSEC_BOX_NO_ADD=1        do not `vagrant box add` the result
set -euo pipefail
LOG_TAG=build-box
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly SUITE=bookworm
MIRROR=${CAPSEC_DEBIAN_MIRROR:-$("$(dirname "${BASH_SOURCE[0]}")/../scripts/install-deps.sh" --print-mirror)}
readonly MIRROR
readonly CRIU_PREFIX=/opt/capsec/criu
readonly DISK_GB=4
PACKAGES=systemd-sysv,udev,dbus,iproute2,openssh-server,sudo,linux-image-amd64,initramfs-tools,kmod,procps,nftables
[[ ${CAPSEC_BOX_DEBIAN_CRIU:-0} == 1 ]] && PACKAGES+=,criu
readonly PACKAGES
readonly VAGRANT_PUB_GLOB='/usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub'
# The well-known insecure key every Vagrant base box carries; Vagrant swaps it
# for a fresh per-VM key on first boot. Used when Vagrant's own copy is absent.
readonly INSECURE_KEY='ssh-rsa AAAAB3NzaC1yc2EAAAABIwAAAQEA6NF8iallvQVp22WDkTkyrtvp9eWW6A8YVr+kz4TjGYe7gHzIw+niNltGEFHzD8+v1I2YJ6oXevct1YeS0o9HZyN1Q9qgCgzUFtdOKLv6IedplqoPkcmF0aYet2PkEDo3MlTBckFXPITAMzF8dJSIFo9D8HfdOV0IAdx4O7PtixWKn5y2hMNG0zQPyUecp4pzC6kivAIhyfHilFR61RGL+GPXQ2MWZWFYbAGjyiYJnAmCP3NOTd0jMZEnDkbUvxhMmBYSdETk1rRgm+R4LOzFUGaHqHDLKLX+FIPKcF96hrucXzcWyLbIbEgE98OHlnVYCzRdK8jlqm8tehUc9c9WhQ== vagrant insecure public key'

WORK=
cleanup() {
	local rc=$?
	if [[ -n $WORK && -d $WORK ]]; then
		# debootstrap mounts proc and sys in the target; a failure can leave them.
		local m
		awk -v w="$WORK" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r |
			while read -r m; do umount -l "$m" 2>/dev/null || true; done
		rm -rf "$WORK"
	fi
	((rc == 0)) || log "failed (exit $rc); removed the partial build"
}
trap cleanup EXIT

preflight() {
	[[ $(id -u) == 0 ]] || die "run as root (sudo $0)"
	local t
	for t in debootstrap mkfs.ext4 qemu-img tar; do
		command -v "$t" >/dev/null || die "$t is missing: run vagrant/install-deps.sh"
	done
	for t in capsec-agent migrate mbprobe plcsim; do
		[[ -x $BIN/$t ]] || die "$BIN/$t is missing: run \`make build\`"
	done
	[[ -f $IMAGES/plcsim/config.json ]] || die "$IMAGES/plcsim is missing: run \`make build\`"
	[[ -x $CRIU_PREFIX/bin/criu ]] || die "$CRIU_PREFIX is missing: run \`make deps\`"
}

# base_rootfs DEST: the debootstrapped Debian, from the cache when it has it.
base_rootfs() {
	local dest=$1 key cache
	key=$(printf '%s %s %s\n' "$SUITE" "$MIRROR" "$PACKAGES" | sha256sum | cut -c1-12)
	cache=$LAB_OUT/cache/base-$SUITE-$key.tar
	mkdir -p "$dest"
	if [[ -f $cache ]]; then
		log "base: from cache $(basename "$cache")"
		tar -C "$dest" --numeric-owner -xpf "$cache"
		return
	fi
	local t0
	t0=$(now_s)
	log "base: debootstrap --variant=minbase $SUITE from $MIRROR (a few minutes)"
	debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$dest" "$MIRROR" \
		>"$WORK/debootstrap.log" 2>&1 || {
		tail -n 20 "$WORK/debootstrap.log" >&2
		die "debootstrap failed (log above)"
	}
	rm -rf "$dest"/var/cache/apt/archives/*.deb "$dest"/var/lib/apt/lists/*_Packages
	log "base: debootstrap took $(since "$t0") s, $(du -sh "$dest" | cut -f1)"
	mkdir -p "$(dirname "$cache")"
	rm -f "$(dirname "$cache")"/base-$SUITE-*.tar # an older package list's base
	tar -C "$dest" --numeric-owner -cpf "$cache.tmp" . && mv "$cache.tmp" "$cache"
}

# configure_guest ROOT: the vagrant user, networking, sshd, an empty machine-id.
configure_guest() {
	local r=$1 key
	# shellcheck disable=SC2086 # the glob is meant to expand
	key=$(cat $VAGRANT_PUB_GLOB 2>/dev/null | head -n1) || true
	[[ -n $key ]] || key=$INSECURE_KEY

	chroot "$r" useradd --create-home --shell /bin/bash --user-group vagrant
	echo 'vagrant:vagrant' | chroot "$r" chpasswd
	install -d -m 0700 -o 1000 -g 1000 "$r/home/vagrant/.ssh"
	printf '%s\n' "$key" >"$r/home/vagrant/.ssh/authorized_keys"
	chown 1000:1000 "$r/home/vagrant/.ssh/authorized_keys"
	chmod 0600 "$r/home/vagrant/.ssh/authorized_keys"
	printf 'vagrant ALL=(ALL) NOPASSWD:ALL\nDefaults:vagrant !requiretty\n' >"$r/etc/sudoers.d/vagrant"
	chmod 0440 "$r/etc/sudoers.d/vagrant"

	echo capsec >"$r/etc/hostname"
	printf '127.0.0.1\tlocalhost\n127.0.1.1\tcapsec\n' >"$r/etc/hosts"
	printf 'LABEL=capsec-root\t/\text4\tdefaults,noatime\t0\t1\n' >"$r/etc/fstab"

	# DHCP on eth0 (Vagrant's management network); the plant network's NIC
	# (eth1) is left to provision.sh, which puts it into the capsec-br bridge.
	mkdir -p "$r/etc/systemd/network"
	printf '[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\n' >"$r/etc/systemd/network/10-eth0.network"
	systemctl --root="$r" enable systemd-networkd.service >/dev/null 2>&1
	systemctl --root="$r" enable serial-getty@ttyS0.service >/dev/null 2>&1 || true

	# Each VM makes its own host keys at first boot, not one set for all.
	rm -f "$r"/etc/ssh/ssh_host_*
	cat >"$r/etc/systemd/system/ssh-hostkeys.service" <<'UNIT'
[Unit]
Description=Generate SSH host keys on first boot
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
UNIT
	systemctl --root="$r" enable ssh-hostkeys.service >/dev/null 2>&1
	printf 'UseDNS no\n' >"$r/etc/ssh/sshd_config.d/vagrant.conf"

	# An empty machine-id makes systemd create a new one per VM at boot.
	: >"$r/etc/machine-id"
	rm -f "$r/var/lib/dbus/machine-id"
}

# add_capsec ROOT: binaries, the plcsim bundle, CRIU, and sysctls quic-go wants.
add_capsec() {
	local r=$1 b
	for b in capsec-agent migrate mbprobe plcsim; do
		install -m 0755 "$BIN/$b" "$r/usr/local/bin/$b"
	done
	mkdir -p "$r/usr/local/share/capsec/images"
	cp -a "$IMAGES/plcsim" "$r/usr/local/share/capsec/images/plcsim"
	mkdir -p "$r/opt/capsec"
	cp -a "$CRIU_PREFIX" "$r/opt/capsec/criu"
	printf 'net.core.rmem_max = 7500000\nnet.core.wmem_max = 7500000\n' >"$r/etc/sysctl.d/60-capsec.conf"
	{
		echo "built $(date -u +%FT%TZ) on $(hostname)"
		echo "debian $SUITE from $MIRROR"
		echo "kernel $(basename "$(readlink -f "$r/vmlinuz")")"
		echo "criu $(sed -n 's/^version=//p' "$CRIU_PREFIX/.capsec-stamp") ($CRIU_PREFIX)"
		for b in capsec-agent migrate mbprobe plcsim; do
			echo "$b sha256 $(sha256sum "$BIN/$b" | cut -c1-16)"
		done
	} >"$r/usr/local/share/capsec/BUILD"
}

# box_vagrantfile: how a VM boots from this box. The image has no bootloader:
# QEMU loads the kernel and initrd itself.
box_vagrantfile() {
	cat <<'RUBY'
# Vagrantfile of the capsec/bookworm box (written by capsec's vagrant/build-box.sh).
Vagrant.configure("2") do |config|
  config.vm.synced_folder ".", "/vagrant", disabled: true
  config.vm.provider :libvirt do |lv|
    lv.driver = "qemu"
    lv.cpu_mode = "custom"
    lv.cpu_model = "qemu64"
    lv.kernel = File.expand_path("vmlinuz", __dir__)
    lv.initrd = File.expand_path("initrd.img", __dir__)
    lv.cmd_line = "root=LABEL=capsec-root rw console=ttyS0 net.ifnames=0"
    lv.disk_bus = "virtio"
    lv.nic_model_type = "virtio"
  end
end
RUBY
}

package() {
	local r=$1 pkg=$WORK/pkg size
	mkdir -p "$pkg"
	cp "$(readlink -f "$r/vmlinuz")" "$pkg/vmlinuz"
	cp "$(readlink -f "$r/initrd.img")" "$pkg/initrd.img"
	chmod 0644 "$pkg/vmlinuz" "$pkg/initrd.img"
	size=$(du -sm "$r" | cut -f1)
	((size < DISK_GB * 1024 * 3 / 4)) || die "rootfs is ${size} MiB: too big for a ${DISK_GB} GiB disk"
	log "image: mkfs.ext4 -d (${size} MiB of files) into a ${DISK_GB} GiB raw disk"
	truncate -s "${DISK_GB}G" "$WORK/root.raw"
	mkfs.ext4 -q -F -L capsec-root -d "$r" "$WORK/root.raw" || die "mkfs.ext4 -d failed"
	qemu-img convert -O qcow2 "$WORK/root.raw" "$pkg/box.img" || die "qemu-img convert failed"
	rm -f "$WORK/root.raw"
	printf '{"provider":"libvirt","format":"qcow2","virtual_size":%d}\n' "$DISK_GB" >"$pkg/metadata.json"
	box_vagrantfile >"$pkg/Vagrantfile"
	mkdir -p "$LAB_OUT"
	tar -C "$pkg" -czf "$WORK/box.tmp" metadata.json Vagrantfile box.img vmlinuz initrd.img
	mv "$WORK/box.tmp" "$BOX_FILE"
}

# prune_box_volumes: vagrant-libvirt copies a box's disk into libvirt's default
# pool once per box version (ours is always 0, told apart by a timestamp), and
# never removes it. Without this, every rebuild would leave ~750 MB behind.
prune_box_volumes() {
	command -v virsh >/dev/null && virsh -q version >/dev/null 2>&1 || return 0
	if virsh -q list --all --name | grep -q '^capsec-vagrant-'; then
		log "lab VMs exist: keeping the old box volumes they may stand on (demo.sh down, then rebuild)"
		return 0
	fi
	local prefix=${BOX_NAME//\//-VAGRANTSLASH-}_vagrant_box_image_ v
	for v in $(virsh -q vol-list default 2>/dev/null | awk '{ print $1 }' | grep -F "$prefix" || true); do
		virsh -q vol-delete --pool default "$v" >/dev/null && log "removed the old box volume $v"
	done
}

add_box() {
	[[ ${CAPSEC_BOX_NO_ADD:-0} == 1 ]] && return
	command -v vagrant >/dev/null || {
		log "vagrant not installed: not adding the box (vagrant/install-deps.sh)"
		return
	}
	prune_box_volumes
	local t0
	t0=$(now_s)
	vagrant box add --force --name "$BOX_NAME" "$BOX_FILE" >"$WORK/box-add.log" 2>&1 || {
		cat "$WORK/box-add.log" >&2
		die "vagrant box add failed"
	}
	log "box added as $BOX_NAME in $(since "$t0") s (VAGRANT_HOME=$VAGRANT_HOME)"
}

main() {
	local t0
	t0=$(now_s)
	preflight
	mkdir -p "$LAB_OUT"
	WORK=$(mktemp -d "$LAB_OUT/.build.XXXXXX")
	base_rootfs "$WORK/root"
	configure_guest "$WORK/root"
	add_capsec "$WORK/root"
	package "$WORK/root"
	log "built $BOX_FILE ($(du -h "$BOX_FILE" | cut -f1)) in $(since "$t0") s"
	since "$t0" >"$LAB_OUT/box-build.seconds" # for demo.sh's report
	add_box
	log "done in $(since "$t0") s"
}

main "$@"
