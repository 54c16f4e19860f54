#!/usr/bin/env bash
# install-deps.sh: everything capsec needs on a Debian host, for `make deps`. Run as root.
# Idempotent: a second run checks and prints, and downloads nothing.
#
#  1. Debian packages from the system's own apt sources (iproute2, nsenter, cgo for runc's
#     nsenter, nftables to inspect CRIU's network lock, ...).
#  2. CRIU >= 4.2 in the private prefix /opt/capsec/criu, run through /opt/capsec/criu/bin/criu.
#  3. A Go that can switch to the toolchain go.mod names (>= 1.21), see scripts/find-go.
#  4. UDP socket buffers large enough for quic-go.
#
# Why CRIU comes from Debian testing/unstable, and into a private prefix:
#  - Debian 12's criu 3.17 cannot dump on current kernels ("vdso: Unexpected rt vDSO area
#    bounds"), and CRIU 4.1.1 fails to dump established TCP sockets, which live migration
#    needs. 4.2 is the first release that works for us.
#  - Testing/unstable's criu is built against a newer glibc (2.38+) and newer libraries
#    (libnl 3.11, libnet9, t64 gnutls) than Debian 12 has. Installing those into the system
#    would half-upgrade it. So the .debs of criu and of its whole Depends closure are
#    fetched with a private apt configuration (own sources, lists, cache and an empty dpkg
#    status; the system's apt state and dpkg database are not touched), unpacked with
#    `dpkg -x`, and run with the prefix's own dynamic loader and library path. Programs
#    that CRIU itself starts (ip, tar, action scripts) still get the host's libraries,
#    because the loader's --library-path is not inherited as LD_LIBRARY_PATH would be.
#  - The version is whatever the suite carries today (checked to be >= 4.2), not a pinned
#    string that the archive may drop. The mirror is the one the system's apt already uses.
#
# Environment knobs:
#   CAPSEC_DEBIAN_MIRROR=URI      mirror for the private suites (default: from apt sources)
#   CAPSEC_CRIU_REINSTALL=1       rebuild the CRIU prefix even if it is current (to pick up a
#                                 newer CRIU from the suite: a current prefix is never refreshed)
#   CAPSEC_GO_BOOTSTRAP_FORCE=1   unpack the bootstrap Go even if a usable go exists
set -euo pipefail

readonly CAPSEC_DIR=/opt/capsec
readonly CRIU_PREFIX=$CAPSEC_DIR/criu
readonly CRIU_MIN=4.2
readonly CRIU_SUITES=(testing unstable)
readonly GO_BOOTSTRAP=$CAPSEC_DIR/go-bootstrap
readonly GO_MIN=1.21
readonly UDP_BUF_MIN=7500000
readonly APT_MAX_AGE_MIN=1440
readonly DEBIAN_PKGS=(iproute2 util-linux gcc libc6-dev make ca-certificates procps kmod
	e2fsprogs nftables)
# Kernel features the lab uses; only loaded where the kernel has loadable modules.
readonly KERNEL_MODULES=(veth bridge nf_tables tun)

GO_SUMMARY= # set by setup_go for the summary line
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SCRIPT_DIR

log() { printf 'deps: %s\n' "$*"; }
warn() { printf 'deps: warning: %s\n' "$*" >&2; }
die() {
	printf 'deps: error: %s\n' "$*" >&2
	exit 1
}

os_codename() {
	sed -n 's/^VERSION_CODENAME=//p' /etc/os-release | tr -d '"'
}

ver_ge() { dpkg --compare-versions "$1" ge "$2"; }

# upstream_version 2:1.23.5-1~bpo12+1 -> 1.23.5 (drops the epoch and the Debian revision).
upstream_version() {
	local v=${1#*:}
	printf '%s\n' "${v%-*}"
}

# ---- 1. Debian packages from the system's sources ---------------------------------------

apt_lists_fresh() {
	local lists=/var/lib/apt/lists
	compgen -G "$lists/*_Packages*" >/dev/null || return 1
	[[ -z $(find "$lists" -maxdepth 1 -name '*_Packages*' -mmin +"$APT_MAX_AGE_MIN" -print -quit) ]]
}

install_debian_packages() {
	local missing=() p
	for p in "${DEBIAN_PKGS[@]}"; do
		[[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) == installed ]] ||
			missing+=("$p")
	done
	if ((${#missing[@]} == 0)); then
		log "debian packages: all ${#DEBIAN_PKGS[@]} present"
		return
	fi
	log "debian packages: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	local updated=0
	if ! apt_lists_fresh; then
		apt-get update -qq || die "apt-get update failed"
		updated=1
	fi
	if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
		# Stale lists name .debs the mirror no longer has: refresh once and retry.
		((updated)) && die "apt-get install ${missing[*]} failed"
		apt-get update -qq || die "apt-get update failed"
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
			die "apt-get install ${missing[*]} failed"
	fi
}

load_kernel_modules() {
	# A kernel without loadable modules (all built in) has no /proc/modules.
	[[ -e /proc/modules ]] || return 0
	local m
	for m in "${KERNEL_MODULES[@]}"; do
		modprobe -q "$m" 2>/dev/null || warn "modprobe $m failed (fine if it is built in)"
	done
}

# ---- private apt: other suites without touching the system's apt or dpkg state ---------

# debian_mirror prints "URI<TAB>KEYRING" of the system's Debian archive source (not the
# security one): the first enabled deb entry whose suite is the release or a sibling.
debian_mirror() {
	if [[ -n ${CAPSEC_DEBIAN_MIRROR:-} ]]; then
		printf '%s\t%s\n' "$CAPSEC_DEBIAN_MIRROR" ""
		return
	fi
	local codename files=()
	codename=$(os_codename)
	[[ -f /etc/apt/sources.list ]] && files+=(/etc/apt/sources.list)
	for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
		[[ -f $f ]] && files+=("$f")
	done
	((${#files[@]})) || return 1
	awk -v codename="$codename" '
		function wanted(suites,   n, s, i) {
			n = split(suites, s, /[ \t]+/)
			for (i = 1; i <= n; i++)
				if (s[i] != "" && s[i] !~ /security/ && s[i] !~ /\// &&
				    (s[i] ~ ("^" codename "(-updates|-backports)?$") ||
				     s[i] ~ /^(stable|testing|unstable|sid)$/))
					return 1
			return 0
		}
		function emit(uri, key) {
			if (uri == "" || uri ~ /^cdrom:/) return
			if (key !~ /^\//) key = ""
			printf "%s\t%s\n", uri, key
			found = 1
			exit
		}
		function flush() {
			if (types ~ /(^|[ \t])deb([ \t]|$)/ && enabled != "no" && wanted(suites)) {
				split(uris, u, /[ \t]+/)
				emit(u[1], signed)
			}
			types = uris = suites = signed = enabled = ""
		}
		# One-line format (*.list): deb [opts] URI SUITE COMPONENTS...
		FILENAME !~ /\.sources$/ {
			if ($1 != "deb") next
			line = $0; key = ""
			if (match(line, /\[[^]]*\]/)) {
				opts = substr(line, RSTART + 1, RLENGTH - 2)
				line = substr(line, 1, RSTART - 1) substr(line, RSTART + RLENGTH)
				if (match(opts, /signed-by=[^ \t]+/)) key = substr(opts, RSTART + 10, RLENGTH - 10)
			}
			split(line, f, /[ \t]+/)
			if (wanted(f[3])) emit(f[2], key)
			next
		}
		# deb822 format (*.sources): paragraphs of "Field: value".
		FNR == 1 { flush() }
		/^[ \t]*#/ { next }
		/^[ \t]*$/ { flush(); next }
		/^[A-Za-z-]+:/ {
			field = tolower($1); sub(/:$/, "", field)
			value = $0; sub(/^[^:]*:[ \t]*/, "", value)
			if (field == "types") types = value
			else if (field == "uris") uris = value
			else if (field == "suites") suites = value
			else if (field == "signed-by") signed = value
			else if (field == "enabled") enabled = tolower(value)
		}
		END { if (!found) flush() }
	' "${files[@]}"
}

# papt_setup WORKDIR SUITE: point the private apt at one suite of the system's mirror and
# fetch its package list. Sets PAPT (the options for apt-get and apt-cache).
PAPT=()
papt_setup() {
	local ws=$1 suite=$2 mirror uri key arch
	mirror=$(debian_mirror) || true
	uri=$(cut -f1 <<<"$mirror")
	key=$(cut -f2 <<<"$mirror")
	[[ -n $uri ]] || die "no Debian archive found in /etc/apt/sources.list{,.d/*.list,.d/*.sources}; set CAPSEC_DEBIAN_MIRROR=URI"
	[[ -z $key && -f /usr/share/keyrings/debian-archive-keyring.gpg ]] &&
		key=/usr/share/keyrings/debian-archive-keyring.gpg
	arch=$(dpkg --print-architecture)
	mkdir -p "$ws/lists/partial" "$ws/cache/archives/partial"
	: >"$ws/status"
	# targets=Packages: the host's apt.conf.d may ask for DEP-11, Contents, translations.
	printf 'deb [arch=%s targets=Packages%s] %s %s main\n' \
		"$arch" "${key:+ signed-by=$key}" "$uri" "$suite" >"$ws/sources.list"
	PAPT=(-o "Dir::Etc::SourceList=$ws/sources.list" -o Dir::Etc::SourceParts=/dev/null
		-o "Dir::State::Lists=$ws/lists" -o "Dir::State::status=$ws/status"
		-o "Dir::Cache=$ws/cache" -o Dir::Etc::Preferences=/dev/null
		-o Dir::Etc::PreferencesParts=/dev/null -o Acquire::Languages=none)
	# apt-get update only warns about an index it could not fetch: check that one arrived.
	rm -f "$ws/lists/"*_Packages*
	if ! apt-get "${PAPT[@]}" -o APT::Update::Error-Mode=any -qq update ||
		! compgen -G "$ws/lists/*_Packages*" >/dev/null; then
		die "private apt update of '$suite' from $uri failed (network? is debian-archive-keyring current?)"
	fi
}

papt_candidate() {
	apt-cache "${PAPT[@]}" policy "$1" | awk '/Candidate:/ { print $2 }'
}

# papt_unpack DEST MANIFEST PKG: download PKG and its whole Depends/Pre-Depends closure from
# the private suite and unpack each .deb into DEST; append "name version" to MANIFEST.
papt_unpack() {
	local dest=$1 manifest=$2 pkg=$3 debs pkgs deb
	mkdir -p "$dest"
	debs=$(mktemp -d "$(dirname "$dest")/debs.XXXXXX")
	# apt downloads as the unprivileged _apt user when it can write the target directory.
	id _apt >/dev/null 2>&1 && chown _apt "$debs"
	mapfile -t pkgs < <(apt-cache "${PAPT[@]}" depends --recurse --no-recommends \
		--no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances "$pkg" |
		grep -v -e '^ ' -e '^<' | sort -u)
	((${#pkgs[@]})) || die "no packages resolved for $pkg"
	(cd "$debs" && apt-get "${PAPT[@]}" -qq download "${pkgs[@]}") ||
		die "apt-get download ${pkgs[*]} failed"
	for deb in "$debs"/*.deb; do
		dpkg -x "$deb" "$dest" || die "dpkg -x $deb failed"
		# shellcheck disable=SC2016 # dpkg-deb's own ${field} syntax
		dpkg-deb --show --showformat='${Package} ${Version}\n' "$deb" >>"$manifest"
	done
	rm -rf "$debs"
	log "  unpacked ${#pkgs[@]} packages ($(du -sh "$dest" | cut -f1))"
}

# new_workdir prints a fresh scratch directory beside the prefixes, on their filesystem, so
# that moving a finished build into place is a rename. The caller removes it (trap).
new_workdir() {
	local ws
	mkdir -p "$CAPSEC_DIR"
	ws=$(mktemp -d "$CAPSEC_DIR/.work.XXXXXX")
	chmod 0755 "$ws" # apt fetches as the _apt user, which must reach the lists and debs
	printf '%s\n' "$ws"
}

# replace_dir NEW FINAL: move the finished NEW into FINAL's place, in one rename where FINAL
# does not exist yet. The old copy is removed only after the new one is in place.
replace_dir() {
	local new=$1 final=$2 old=
	if [[ -e $final || -L $final ]]; then
		old=$(mktemp -u "$final.old.XXXXXX")
		mv -T "$final" "$old"
	fi
	mv -T "$new" "$final"
	[[ -z $old ]] || rm -rf "$old"
}

# ---- 2. CRIU -----------------------------------------------------------------------------

criu_version_of() {
	"$1" --version 2>/dev/null | awk '/^Version:/ { print $2 }'
}

stamp_get() {
	[[ -f $1 ]] && sed -n "s/^$2=//p" "$1"
}

# criu_current: the prefix exists, its stamp names the version the wrapper reports, and
# that version is new enough.
criu_current() {
	local stamp=$CRIU_PREFIX/.capsec-stamp want got
	[[ ${CAPSEC_CRIU_REINSTALL:-0} == 1 ]] && return 1
	want=$(stamp_get "$stamp" version) || return 1
	got=$(criu_version_of "$CRIU_PREFIX/bin/criu") || return 1
	[[ -n $got && $got == "$want" ]] && ver_ge "$got" "$CRIU_MIN"
}

# host_criu prints the first criu on PATH (other than ours) if it is new enough.
host_criu() {
	local dir c='' v
	local -a dirs
	IFS=: read -ra dirs <<<"$PATH"
	for dir in "${dirs[@]}"; do
		[[ -n $dir && -x $dir/criu && ! -d $dir/criu ]] || continue
		[[ $(readlink -f "$dir/criu") == "$CRIU_PREFIX"/* ]] && continue
		c=$dir/criu
		break
	done
	[[ -n $c ]] || return 1
	v=$(criu_version_of "$c")
	[[ -n $v ]] && ver_ge "$v" "$CRIU_MIN" && printf '%s\n' "$c"
}

# write_criu_wrapper: LIBPATH holds a literal $root, which the wrapper expands at run time.
write_criu_wrapper() {
	local wrapper=$1 loader=$2 libpath=$3 exe=$4 about=$5
	cat >"$wrapper" <<EOF
#!/bin/sh
# capsec: $about, written by scripts/install-deps.sh.
# Runs criu with the prefix's own loader and libraries; the host's stay untouched. Found
# relative to this file so that the prefix can be built elsewhere and renamed into place.
root=\$(dirname "\$(dirname "\$(readlink -f "\$0")")")/root
exec "\$root/$loader" --argv0 "\$0" --library-path "$libpath" "\$root/$exe" "\$@"
EOF
	chmod 0755 "$wrapper"
}

# check_private_libs ROOT LOADER LIBPATH EXE: every library criu needs resolves inside ROOT.
check_private_libs() {
	local root=$1 loader=$2 libpath=$3 exe=$4 out bad
	out=$("$root/$loader" --library-path "$libpath" --list "$root/$exe") ||
		die "the prefix loader cannot load $exe: $out"
	bad=$(awk -v root="$root" '/not found/ || ($2 == "=>" && index($3, root) != 1)' <<<"$out")
	[[ -z $bad ]] || die "CRIU libraries resolve outside the prefix:"$'\n'"$bad"
}

install_criu_private() {
	local ws=$1 suite cand='' chosen='' build root loader exe d libpath='' wrappath='' v
	local -a libdirs
	for suite in "${CRIU_SUITES[@]}"; do
		papt_setup "$ws/apt" "$suite"
		cand=$(papt_candidate criu)
		if [[ -n $cand && $cand != "(none)" ]] && ver_ge "$(upstream_version "$cand")" "$CRIU_MIN"; then
			chosen=$suite
			break
		fi
		log "criu: $suite has ${cand:-none}, need >= $CRIU_MIN"
	done
	[[ -n $chosen ]] || die "no criu >= $CRIU_MIN in Debian ${CRIU_SUITES[*]}"
	log "criu: installing $cand from Debian $chosen into $CRIU_PREFIX"

	build=$ws/criu
	root=$build/root
	papt_unpack "$root" "$build/PACKAGES" criu
	exe=$(cd "$root" && for p in usr/sbin/criu sbin/criu usr/bin/criu; do
		[[ -x $p ]] && echo "$p" && break
	done) || die "no criu executable in the unpacked criu package"
	loader=$(cd "$root" && find . -type f -name 'ld-linux*.so*' -printf '%P\n' | sort | head -n1)
	[[ -n $loader ]] || die "no ld-linux loader in the unpacked libc6"
	mapfile -t libdirs < <(cd "$root" && find . -name 'lib*.so*' ! -path './usr/share/*' ! -path '*/gconv/*' \
		-printf '%h\n' | sed 's|^\./||' | sort -u)
	((${#libdirs[@]})) || die "no shared libraries in the unpacked packages"
	for d in "${libdirs[@]}"; do
		libpath+=${libpath:+:}$root/$d
		wrappath+=${wrappath:+:}\$root/$d
	done
	check_private_libs "$root" "$loader" "$libpath" "$exe"

	mkdir -p "$build/bin"
	write_criu_wrapper "$build/bin/criu" "$loader" "$wrappath" "$exe" \
		"CRIU $cand from Debian $chosen"
	v=$(criu_version_of "$build/bin/criu")
	[[ -n $v ]] || die "the new wrapper's 'criu --version' failed"
	ver_ge "$v" "$CRIU_MIN" || die "criu reports version $v, need >= $CRIU_MIN"
	printf 'mode=private\nversion=%s\ndeb=%s\nsuite=%s\n' "$v" "$cand" "$chosen" \
		>"$build/.capsec-stamp"
	replace_dir "$build" "$CRIU_PREFIX"
}

install_criu_host() {
	local ws=$1 c=$2 v build=$1/criu
	v=$(criu_version_of "$c")
	log "criu: using the host's $c ($v)"
	mkdir -p "$build/bin"
	ln -s "$c" "$build/bin/criu"
	printf 'mode=host\nversion=%s\npath=%s\n' "$v" "$c" >"$build/.capsec-stamp"
	replace_dir "$build" "$CRIU_PREFIX"
}

# verify_criu runs CRIU the way libcontainer does: found as "criu" on PATH.
verify_criu() {
	local out
	out=$(PATH=$CRIU_PREFIX/bin:$PATH criu check 2>&1) ||
		die "'criu check' failed with $CRIU_PREFIX/bin/criu:"$'\n'"$out"
	out=$(PATH=$CRIU_PREFIX/bin:$PATH criu check --feature network_lock_nftables 2>&1) ||
		die "CRIU cannot lock the network with nftables (capsec needs it: no iptables):"$'\n'"$out"
}

setup_criu() {
	local ws c
	if criu_current; then
		log "criu: $CRIU_PREFIX current ($(stamp_get "$CRIU_PREFIX/.capsec-stamp" version))"
	else
		ws=$(new_workdir)
		# shellcheck disable=SC2064 # expand ws now: it is local
		trap "rm -rf '$ws'" EXIT
		if c=$(host_criu); then
			install_criu_host "$ws" "$c"
		else
			install_criu_private "$ws"
		fi
		rm -rf "$ws"
		trap - EXIT
	fi
	verify_criu
}

# ---- 3. Go -------------------------------------------------------------------------------

go_version_of() {
	(cd / && GOTOOLCHAIN=local "$1" env GOVERSION 2>/dev/null)
}

install_go_bootstrap() {
	local ws codename suite cand='' gopkg build goroot v
	ws=$(new_workdir)
	# shellcheck disable=SC2064 # expand ws now: it is local
	trap "rm -rf '$ws'" EXIT
	codename=$(os_codename)
	[[ -n $codename ]] || die "no VERSION_CODENAME in /etc/os-release"
	for suite in "$codename-backports" "$codename"; do
		papt_setup "$ws/apt" "$suite"
		cand=$(papt_candidate golang-go)
		if [[ -n $cand && $cand != "(none)" ]] && ver_ge "$(upstream_version "$cand")" "$GO_MIN"; then
			break
		fi
		cand=''
	done
	[[ -n $cand ]] || die "no golang-go >= $GO_MIN in Debian $codename-backports or $codename"
	gopkg=$(apt-cache "${PAPT[@]}" show --no-all-versions golang-go |
		sed -n 's/^Depends: //p' | grep -o 'golang-1\.[0-9]*-go' | head -n1)
	[[ -n $gopkg ]] || die "cannot tell which golang-1.N-go golang-go $cand depends on"
	log "go: unpacking $gopkg (golang-go $cand, Debian $suite) into $GO_BOOTSTRAP"

	build=$ws/go
	papt_unpack "$build/root" "$build/PACKAGES" "$gopkg"
	goroot=$(cd "$build/root" && find usr/lib -mindepth 1 -maxdepth 1 -name 'go-1.*' | head -n1)
	[[ -x $build/root/$goroot/bin/go ]] || die "no bin/go in the unpacked $gopkg"
	# The toolchain switch is the bootstrap's whole point: never let it be "local".
	[[ -f $build/root/$goroot/go.env ]] &&
		sed -i 's/^GOTOOLCHAIN=.*/GOTOOLCHAIN=auto/' "$build/root/$goroot/go.env"
	mkdir -p "$build/bin"
	ln -s "../root/$goroot/bin/go" "$build/bin/go"
	ln -s "../root/$goroot/bin/gofmt" "$build/bin/gofmt"
	v=$(go_version_of "$build/bin/go") || die "the unpacked $gopkg does not run"
	printf 'version=%s\ndeb=%s\nsuite=%s\n' "$v" "$cand" "$suite" >"$build/.capsec-stamp"
	replace_dir "$build" "$GO_BOOTSTRAP"
	rm -rf "$ws"
	trap - EXIT
}

setup_go() {
	local go v want
	if [[ ${CAPSEC_GO_BOOTSTRAP_FORCE:-0} == 1 ]] ||
		! go=$("$SCRIPT_DIR/find-go" 2>/dev/null); then
		install_go_bootstrap
		go=$("$SCRIPT_DIR/find-go") || die "find-go finds no Go even after the bootstrap"
	fi
	v=$(go_version_of "$go")
	GO_SUMMARY="$go ($v)"
	want=$(sed -n 's/^go //p' "$SCRIPT_DIR/../go.mod" 2>/dev/null | head -n1)
	# The environment or the user's go env file (go env -w) may pin the toolchain.
	if [[ -n $want ]] && ! ver_ge "${v#go}" "$want" &&
		[[ $(cd / && "$go" env GOTOOLCHAIN) == local ]]; then
		warn "GOTOOLCHAIN=local (environment or $(cd / && "$go" env GOENV)): $go ($v)" \
			"will refuse go.mod's go $want; use GOTOOLCHAIN=auto"
	fi
	log "go: $GO_SUMMARY; go.mod wants go ${want:-?}, which GOTOOLCHAIN=auto fetches if needed"
}

# ---- 4. sysctl ---------------------------------------------------------------------------

raise_udp_buffers() {
	local key cur
	for key in net.core.rmem_max net.core.wmem_max; do
		cur=$(sysctl -n "$key")
		if ((cur < UDP_BUF_MIN)); then
			if sysctl -q -w "$key=$UDP_BUF_MIN"; then
				log "sysctl: $key $cur -> $UDP_BUF_MIN"
			else
				warn "could not raise $key from $cur (quic-go will warn about small buffers)"
			fi
		fi
	done
}

main() {
	# --print-mirror: the system's Debian mirror, for other scripts (the
	# Vagrant box build) that must not name one of their own.
	if [[ ${1:-} == --print-mirror ]]; then
		debian_mirror | cut -f1 | grep . || die "no Debian archive in the system's apt sources; set CAPSEC_DEBIAN_MIRROR=URI"
		return
	fi
	[[ $(id -u) == 0 ]] || die "run as root (sudo $0)"
	command -v dpkg >/dev/null || die "this script needs a Debian-based system (no dpkg)"
	mkdir -p "$CAPSEC_DIR"
	# Two runs at once would race on the prefix renames.
	exec 9>"$CAPSEC_DIR/.install-deps.lock"
	flock 9
	install_debian_packages
	load_kernel_modules
	setup_criu
	setup_go
	raise_udp_buffers
	log "ok: CRIU $(stamp_get "$CRIU_PREFIX/.capsec-stamp" version) at $CRIU_PREFIX/bin/criu; go $GO_SUMMARY"
}

main "$@"
