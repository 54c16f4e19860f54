# shellcheck shell=bash disable=SC2034 # sourced: the variables are the scripts'
# lib.sh: names and paths shared by the Vagrant lab's scripts (sourced, not run).
# Everything the lab writes on the host lives under _output/vagrant, so that
# `make clean` removes it and a user's own ~/.vagrant.d is never touched.

VAGRANT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$VAGRANT_DIR/.." && pwd)
OUT=${CAPSEC_OUT:-$REPO/_output}
BIN=$OUT/bin
IMAGES=$OUT/images
LAB_OUT=$OUT/vagrant
BOX_NAME=${CAPSEC_BOX_NAME:-capsec/bookworm}
BOX_FILE=$LAB_OUT/capsec-bookworm.box
CA_DIR=$LAB_OUT/ca
# libvirt runs QEMU as libvirt-qemu, which must read the box's kernel and
# initrd where Vagrant unpacked them: /root/.vagrant.d is closed to it.
export VAGRANT_HOME=${CAPSEC_VAGRANT_HOME:-$LAB_OUT/home}
export VAGRANT_DEFAULT_PROVIDER=libvirt
export VAGRANT_CHECKPOINT_DISABLE=1 # no update check: the lab is offline
export LIBVIRT_DEFAULT_URI=qemu:///system
export VAGRANT_CWD=$VAGRANT_DIR
export VAGRANT_DOTFILE_PATH=$LAB_OUT/machines

log() { printf '%s: %s\n' "${LOG_TAG:-vagrant}" "$*" >&2; }
die() {
	printf '%s: error: %s\n' "${LOG_TAG:-vagrant}" "$*" >&2
	exit 1
}

# now_s prints seconds since the epoch with millisecond precision.
now_s() { date +%s.%N | cut -c1-14; }

# since START prints the seconds elapsed since START (from now_s), e.g. 12.3.
since() { awk -v a="$1" -v b="$(now_s)" 'BEGIN { printf "%.1f", b - a }'; }

# lab_accel prints kvm or tcg, as the Vagrantfile decides: /dev/kvm alone is not
# enough (a PVM host has one, and QEMU aborts on it).
lab_accel() {
	if [[ -n ${CAPSEC_VAGRANT_ACCEL:-} ]]; then
		echo "$CAPSEC_VAGRANT_ACCEL"
	elif [[ -e /dev/kvm && ! -d /sys/module/kvm_pvm ]] && grep -qwE 'vmx|svm' /proc/cpuinfo; then
		echo kvm
	else
		echo tcg
	fi
}
