#!/usr/bin/env bash
# device-run.sh [--cpu-only] IMAGE_DIR — the GPU proof, run on a machine with an
# NVIDIA GPU and driver (as root; no network needed). It proves that an image
# built elsewhere runs CUDA work here through the host's driver:
#
#   1. imgbuild verify the image with the test public key
#   2. imgbuild run --gpu IMAGE -- PROBE for both probes, as root: results
#      correct, the driver version printed is the host's, and no driver file is
#      in the cached image tree afterwards (the tree is unchanged)
#   3. the same as an ordinary user (created with useradd) through user namespaces
#   4. the refusals: variants of the image (tests/gpu/make-variants.sh) whose
#      min_driver is above the host's, and whose archs exclude this GPU, are
#      refused before their command starts, each with its message
#   5. imgbuild driver: the libraries and devices it found
#
# IMAGE_DIR holds cuda-probe.tar.zst (+ .sha256, .sig) and imgbuild: either
# IMAGE_DIR/bundle/ or IMAGE_DIR/bundle.tar.gz (tests/gpu/bundle.sh's output:
# imgbuild and its non-glibc libraries), else $IMGBUILD, else build/imgbuild.
# --cpu-only: steps 1, 4 and 5 and a --gpu run without the probes, for a machine
# without a GPU: the driver is then a fixture tree (IMGBUILD_HOST_ROOT and a fake
# libcuda; tests/e2e/cuda-probe.sh does that).
# Every command is printed as "$ command" with its output, then "[exit N]" and
# PASS/FAIL lines; the last line is "device-run: N passed, N failed". Exit status
# 0 only when nothing failed. Keep the output: docs/gpu-proof.md is copied from it.
#
# Env: DEVICE_RUN_TIMEOUT (seconds per command, default 120), DEVICE_RUN_USER (default ibgpu), DEVICE_RUN_WORK (default a new
#      /tmp/imgbuild-device-run.XXXXXX), DEVICE_RUN_IMAGE (default
#      IMAGE_DIR/cuda-probe.tar.zst).
set -uo pipefail
export LC_ALL=C
cd "$(dirname "$0")/../.." || exit 2
REPO=$PWD
cpu_only=0
if [ "${1:-}" = --cpu-only ]; then cpu_only=1; shift; fi
[ $# -eq 1 ] || { echo "usage: bash tests/gpu/device-run.sh [--cpu-only] IMAGE_DIR" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "device-run: run it as root (it creates a user and runs as both)" >&2; exit 2; }
DIR=$(cd "$1" && pwd) || exit 2
SRC_IMAGE=${DEVICE_RUN_IMAGE:-$DIR/cuda-probe.tar.zst}
USERNAME=${DEVICE_RUN_USER:-ibgpu}
WORK=${DEVICE_RUN_WORK:-$(mktemp -d /tmp/imgbuild-device-run.XXXXXX)}
mkdir -p "$WORK" && chmod 755 "$WORK"
PASSED=0 FAILED=0
LIMIT=${DEVICE_RUN_TIMEOUT:-120}	# seconds any one command may take

say() { echo "$*"; }
step() { echo; echo "=== $* ==="; }
pass() { PASSED=$((PASSED + 1)); echo "PASS: $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL: $*"; }
# The command as one would type it: arguments with blanks or shell characters quoted.
cmdline() {
	local a out=""
	for a in "$@"; do
		case "$a" in
		*\'*) out="$out $(printf '%q' "$a")" ;;
		*[!A-Za-z0-9_./:=+,@%-]* | '') out="$out '$a'" ;;
		*) out="$out $a" ;;
		esac
	done
	echo "${out# }"
}
# x CMD...: print "$ CMD", run it, show its output (kept in $WORK/out), set RC.
x() {
	echo "\$ $(cmdline "$@")"
	timeout -k 10 "$LIMIT" "$@" >"$WORK/out" 2>&1
	RC=$?
	cat "$WORK/out"
	[ "$RC" -ne 124 ] && [ "$RC" -ne 137 ] || echo "(killed: still running after $LIMIT s)"
	echo "[exit $RC]"
}
# x_user CMD...: like x, printing the command as the user would type it.
x_user() {
	echo "$USERNAME\$ $(cmdline "$@")"
	local pass_env=()
	mapfile -t pass_env < <(env | grep -E '^(IMGBUILD_HOST_ROOT|IMGBUILD_LIBCUDA|FAKE_CUDA_[A-Z]+)=')
	timeout -k 10 "$LIMIT" runuser -u "$USERNAME" -- env -i HOME="$UHOME" USER="$USERNAME" PATH="$PATH" TERM=dumb \
		"${pass_env[@]}" "$@" >"$WORK/out" 2>&1
	RC=$?
	cat "$WORK/out"
	[ "$RC" -ne 124 ] && [ "$RC" -ne 137 ] || echo "(killed: still running after $LIMIT s)"
	echo "[exit $RC]"
}
has() { grep -qE -- "$1" "$WORK/out"; }
# The driver files run --gpu binds (never to be left in an image tree).
driver_files() {
	find "$1" \( -name 'libcuda.so*' -o -name 'libnvidia-*.so*' -o -name 'nvidia-smi' -o -name 'nvidia-persistenced' \
		-o -path "$1/dev/nvidia*" -o -path "$1/imgbuild" -o -path "$1/imgbuild/*" \) -print 2>/dev/null
}
fingerprint() { (cd "$1" && find . -printf '%p %y %s %m %U:%G %T@ %l\n' | sort | sha256sum | cut -c1-16); }
first_version() { awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+\.[0-9]+(\.[0-9]+)*$/) { print $i; exit } }'; }

# ---------------------------------------------------------------- set-up
step "set-up"
if [ -n "${IMGBUILD:-}" ]; then
	BIN=$(dirname "$IMGBUILD")
elif [ -x "$DIR/bundle/bin/imgbuild" ] || [ -f "$DIR/bundle.tar.gz" ]; then
	rm -rf "$WORK/bundle"
	if [ -f "$DIR/bundle.tar.gz" ]; then tar -xzf "$DIR/bundle.tar.gz" -C "$WORK"; else cp -a "$DIR/bundle" "$WORK/bundle"; fi
	chmod -R a+rX "$WORK/bundle"
	BIN=$WORK/bundle/bin
else
	BIN=$REPO/build
fi
[ -x "$BIN/imgbuild" ] || { echo "device-run: no imgbuild in $BIN" >&2; exit 2; }
export PATH="$BIN:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The image, its .sha256 and .sig, and the test public key, readable by the user.
for f in "$SRC_IMAGE" "$SRC_IMAGE.sha256" "$SRC_IMAGE.sig"; do
	[ -f "$f" ] || { echo "device-run: missing $f" >&2; exit 2; }
	cp "$f" "$WORK/"
done
cp "$REPO/tests/fixtures/imgbuild-test.pub" "$REPO/tests/fixtures/imgbuild-test.sec" "$WORK/"
chmod 644 "$WORK"/*.pub "$WORK"/*.tar.zst* && chmod 600 "$WORK/imgbuild-test.sec"
cd "$WORK" || exit 2
IMAGE=$(basename "$SRC_IMAGE")
PUB=imgbuild-test.pub
HEX=$(awk '{print $1; exit}' "$IMAGE.sha256")
ROOT_CACHE=${IMGBUILD_CACHE:-${XDG_CACHE_HOME:+$XDG_CACHE_HOME/imgbuild}}
ROOT_CACHE=${ROOT_CACHE:-/var/cache/imgbuild}
ROOT_TREE=$ROOT_CACHE/images/$HEX/tree
say "date:      $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
say "host:      $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME"), kernel $(uname -r), $(uname -m)"
say "imgbuild:  $(command -v imgbuild) ($(imgbuild --version 2>&1 | head -n 1))"
say "work dir:  $WORK (the commands below run here)"
say "image:     $IMAGE, $(stat -c %s "$IMAGE") bytes ($(awk -v b="$(stat -c %s "$IMAGE")" 'BEGIN { printf "%.1f", b / 1048576 }') MiB), sha256 $HEX"
say "cache:     $ROOT_CACHE (root)"
HOST_VERSION_FILE=${IMGBUILD_HOST_ROOT:-}/proc/driver/nvidia/version
if [ -r "$HOST_VERSION_FILE" ]; then
	x cat "$HOST_VERSION_FILE"
	HOST_VERSION=$(head -n 1 "$HOST_VERSION_FILE" | first_version)
else
	HOST_VERSION=""
fi
say "host driver version (from $HOST_VERSION_FILE): ${HOST_VERSION:-none}"
HOST_CUDA=""
if [ "$cpu_only" = 0 ]; then
	if command -v nvidia-smi >/dev/null; then
		x nvidia-smi
		HOST_CUDA=$(grep -o 'CUDA Version: *[0-9.]*' "$WORK/out" | head -n 1 | first_version)
		x nvidia-smi --query-gpu=index,name,driver_version,compute_cap,memory.total --format=csv
	else
		say "(no nvidia-smi on this host)"
	fi
fi
if [ "$cpu_only" = 0 ]; then
	x sh -c 'ls -l /dev/nvidia*'
	# CUDA needs /dev/nvidia-uvm; on the host libcuda creates it through the setuid
	# nvidia-modprobe, which an image does not have: make it here if it is missing.
	if [ ! -e /dev/nvidia-uvm ]; then
		say "/dev/nvidia-uvm is missing (nvidia_uvm not loaded): loading it as a CUDA program on the host would"
		if command -v nvidia-modprobe >/dev/null; then x nvidia-modprobe -u -c=0; else x modprobe nvidia-uvm; fi
	fi
fi
for s in kernel.unprivileged_userns_clone user.max_user_namespaces kernel.apparmor_restrict_unprivileged_userns; do
	v=$(sysctl -n "$s" 2>/dev/null) && say "sysctl $s = $v"
done

# ---------------------------------------------------------------- 1. verify
step "1. imgbuild verify the image with the test public key"
x imgbuild verify "$IMAGE" --key "$PUB"
if [ "$RC" -eq 0 ]; then pass "verify with the test key"; else fail "verify exited $RC"; fi
x imgbuild run --key "$PUB" "$IMAGE" -- cat /.imgbuild/facts.toml
if [ "$RC" -eq 0 ] && has '^min_driver = "[0-9.]+"' && { has '^archs = .*\+PTX' || has '^ptx_jit = "true"'; }; then
	pass "the image's facts: a min_driver, and archs with +PTX / ptx_jit = true (any newer GPU JITs the PTX)"
else
	fail "the image's facts lack min_driver or PTX"
fi
[ -d "$ROOT_TREE" ] && say "cached image tree: $ROOT_TREE" || fail "no cached tree at $ROOT_TREE after a run"
ROOT_BEFORE=$(fingerprint "$ROOT_TREE" 2>/dev/null)
if [ -z "$(driver_files "$ROOT_TREE")" ]; then pass "no driver file in the cached tree before any --gpu run"; else
	fail "driver files in the cached tree: $(driver_files "$ROOT_TREE" | tr '\n' ' ')"
fi

# ---------------------------------------------------------------- 2 and 3. the probes
# check_probes WHO TREE: the checks of the output of the two probe runs.
run_probes() {	# x-function WHO TREE
	local xf=$1 who=$2 tree=$3 before
	before=$(fingerprint "$tree" 2>/dev/null)
	$xf imgbuild run --gpu --key "$PUB" "$IMAGE" -- cuda-probe
	local probe_drv=""
	if [ "$RC" -eq 0 ] && has 'cuda-probe: vector add of 16777216 floats ok'; then
		pass "$who: cuda-probe (driver API, PTX JIT for sm_30 on this GPU): 2^24 sums correct"
	else
		fail "$who: cuda-probe exited $RC"
	fi
	probe_drv=$(sed -n 's/.*cuDriverGetVersion \([0-9]*\).*/\1/p' "$WORK/out" | head -n 1)
	if [ -n "$HOST_VERSION" ] && grep -q "cuda-probe: host driver: .* $HOST_VERSION " "$WORK/out"; then
		pass "$who: the driver the probe reports is the host's, $HOST_VERSION"
	else
		fail "$who: the probe did not report host driver $HOST_VERSION"
	fi
	if [ -n "$HOST_CUDA" ]; then
		if grep -q "driver supports CUDA $HOST_CUDA " "$WORK/out"; then
			pass "$who: cuDriverGetVersion says CUDA $HOST_CUDA, as the host's nvidia-smi does"
		else
			fail "$who: cuDriverGetVersion differs from nvidia-smi's CUDA Version $HOST_CUDA"
		fi
	fi
	$xf imgbuild run --gpu --key "$PUB" "$IMAGE" -- cuda-vector-add
	if [ "$RC" -eq 0 ] && has 'cuda-vector-add: ok, 16777216 elements'; then
		pass "$who: cuda-vector-add (CUDA 9.1 nvcc, cudart static, PTX compute_61 JIT-compiled for this GPU): 2^24 sums correct"
	else
		fail "$who: cuda-vector-add exited $RC"
	fi
	if [ -n "$probe_drv" ] && has "driver API $probe_drv,"; then
		pass "$who: cuda-vector-add reports the same driver API version ($probe_drv)"
	else
		fail "$who: cuda-vector-add's driver API version is not the probe's ($probe_drv)"
	fi
	# What was bound: the host's versioned libraries, nvidia-smi from the host.
	$xf imgbuild run --gpu --key "$PUB" "$IMAGE" -- sh -c \
		'ls -l /imgbuild/driver/lib /imgbuild/driver/bin; ls -l /dev | grep nvidia; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader'
	if [ -n "$HOST_VERSION" ] && has "libcuda.so.$HOST_VERSION"; then
		pass "$who: the bound libcuda is the host's libcuda.so.$HOST_VERSION"
	else
		fail "$who: libcuda.so.$HOST_VERSION is not bound"
	fi
	echo "\$ find $tree -name 'libcuda.so*' -o -name 'libnvidia-*.so*' -o -name nvidia-smi -o -path '*/dev/nvidia*' -o -path '$tree/imgbuild*'"
	local left
	left=$(driver_files "$tree")
	echo "${left:-(nothing)}"
	if [ -z "$left" ] && [ -d "$tree" ]; then pass "$who: no driver file in the cached image tree afterwards"; else
		fail "$who: driver files in $tree: $left"
	fi
	local after
	after=$(fingerprint "$tree" 2>/dev/null)
	if [ -n "$before" ] && [ "$before" = "$after" ]; then
		pass "$who: the cached tree is unchanged by the --gpu runs (fingerprint $after)"
	else
		fail "$who: the cached tree changed ($before -> $after)"
	fi
}

if [ "$cpu_only" = 1 ]; then
	step "2. (--cpu-only) imgbuild run --gpu with the fixture driver, no probes"
	x imgbuild run --gpu --key "$PUB" "$IMAGE" -- sh -c 'ls /imgbuild/driver/lib; echo COMMAND-STARTED'
	if [ "$RC" -eq 0 ] && has COMMAND-STARTED && has "libcuda.so.$HOST_VERSION"; then
		pass "run --gpu: preflight passes, the fixture driver's libcuda.so.$HOST_VERSION is bound"
	else
		fail "run --gpu with the fixture driver exited $RC"
	fi
	left=$(driver_files "$ROOT_TREE")
	if [ -z "$left" ] && [ "$(fingerprint "$ROOT_TREE")" = "$ROOT_BEFORE" ]; then
		pass "no driver file in the cached tree afterwards, the tree is unchanged"
	else
		fail "the cached tree changed or holds driver files: $left"
	fi
else
	step "2. imgbuild run --gpu IMAGE -- PROBE, as root"
	run_probes x root "$ROOT_TREE"

	step "3. the same as an ordinary user, through a user namespace"
	if ! id "$USERNAME" >/dev/null 2>&1; then
		x useradd -m -s /bin/bash "$USERNAME"
	fi
	UHOME=$(getent passwd "$USERNAME" | cut -d: -f6)
	if ! [ -d "$UHOME" ]; then mkdir -p "$UHOME" && chown "$USERNAME:" "$UHOME"; fi
	x id "$USERNAME"
	x_user sh -c 'id; ls -l /dev/nvidia*; cat /proc/self/uid_map'
	UTREE=$UHOME/.cache/imgbuild/images/$HEX/tree
	# Ubuntu 23.10+ (kernel.apparmor_restrict_unprivileged_userns = 1) lets an
	# unconfined program create a user namespace but takes its capabilities there
	# (no mounts): a program that needs them gets an AppArmor profile with "userns,"
	# (as Ubuntu ships for bwrap users, podman, ...). Loaded for imgbuild only, and
	# removed at the end; without apparmor_parser the sysctl is lifted instead.
	AA_PROFILE="" AA_SYSCTL=""
	if [ "$(sysctl -n kernel.apparmor_restrict_unprivileged_userns 2>/dev/null)" = 1 ]; then
		say "kernel.apparmor_restrict_unprivileged_userns = 1: unprivileged user namespaces get no capabilities"
		say "unless the program's AppArmor profile allows 'userns'."
		real=$(readlink -f "$BIN/imgbuild.real" 2>/dev/null || readlink -f "$BIN/imgbuild")
		if command -v apparmor_parser >/dev/null; then
			AA_PROFILE=$WORK/imgbuild.apparmor
			printf 'abi <abi/4.0>,\ninclude <tunables/global>\n\nprofile imgbuild-device-run %s flags=(unconfined) {\n  userns,\n}\n' \
				"$real" >"$AA_PROFILE"
			x cat "$AA_PROFILE"
			x apparmor_parser -r "$AA_PROFILE"
			[ "$RC" -eq 0 ] || { AA_PROFILE=""; x sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 && AA_SYSCTL=1; }
		else
			x sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 && AA_SYSCTL=1
		fi
	fi
	# The user's own cached tree (unpacked by the user): made by a first plain run.
	x_user imgbuild run --key "$PUB" "$IMAGE" -- sh -c 'id -u; cat /proc/self/uid_map'
	if [ "$RC" -eq 0 ] && [ -d "$UTREE" ]; then pass "user: the image runs in a user namespace (root inside)"; else
		fail "user: a plain run exited $RC"
	fi
	xu() { x_user "$@"; }
	run_probes xu "user $USERNAME" "$UTREE"
	[ -z "$AA_PROFILE" ] || x apparmor_parser -R "$AA_PROFILE"
	[ -z "$AA_SYSCTL" ] || x sysctl -w kernel.apparmor_restrict_unprivileged_userns=1
fi

# ---------------------------------------------------------------- 4. refusals
step "4. refusals: variants whose facts the host cannot satisfy"
x bash "$REPO/tests/gpu/make-variants.sh" "$IMAGE" "$WORK/variants" imgbuild-test.sec "$PUB"
[ "$RC" -eq 0 ] || fail "make-variants.sh exited $RC"
stem=${IMAGE%.tar.zst}
for v in newdriver oldarchs; do
	img=variants/$stem-$v.tar.zst
	x imgbuild verify "$img" --key "$PUB"
	if [ "$RC" -eq 0 ]; then pass "$v: the variant is signed with the test key and verifies"; else fail "$v: verify exited $RC"; fi
	x imgbuild run --gpu --key "$PUB" "$img" -- sh -c 'echo COMMAND-STARTED'
	case $v in
	newdriver) want="the host's NVIDIA driver ${HOST_VERSION//./\\.} is older than 999\\.0" ;;
	oldarchs) want="this image was compiled for sm_30, sm_35, sm_50, sm_61; this GPU is sm_[0-9]+" ;;
	esac
	if [ "$RC" -eq 1 ] && has "$want" && ! has COMMAND-STARTED; then
		pass "$v: refused before the command started (exit 1, /$want/)"
	else
		fail "$v: exit $RC, wanted 1 with /$want/ and no COMMAND-STARTED"
	fi
done

# ---------------------------------------------------------------- 5. imgbuild driver
step "5. imgbuild driver"
x imgbuild driver
if [ "$RC" -eq 0 ] && [ -n "$HOST_VERSION" ] && has "NVIDIA driver $HOST_VERSION" && has "libcuda\.so\.$HOST_VERSION" && has '/dev/nvidiactl'; then
	pass "imgbuild driver: version $HOST_VERSION, libcuda and the device nodes found"
else
	fail "imgbuild driver output lacks the version, libcuda or /dev/nvidiactl"
fi

echo
echo "device-run: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
