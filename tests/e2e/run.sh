#!/usr/bin/env bash
# imgbuild run: exit codes, profile.d, --bind, the current directory, the tree
# left unchanged, an ordinary user through user namespaces, image files, and
# the three --gpu refusals against fixture drivers (IMGBUILD_HOST_ROOT + a fake
# libcuda through IMGBUILD_LIBCUDA).
. "$(dirname "$0")/../lib.sh"
require_root
BUSYBOX=$(command -v busybox || true)
if [ -z "$BUSYBOX" ] || ! file -L "$BUSYBOX" | grep -q 'statically linked'; then
	skip "needs a static busybox (apt-get install busybox-static)"
	exit 0
fi
chmod 755 "$TMP"	# the test user reads the tree
ROOT=$TMP/root
mkdir -p "$ROOT/bin" "$ROOT/etc/profile.d" "$ROOT/root" "$ROOT/tmp"
cp "$BUSYBOX" "$ROOT/bin/busybox"
for a in $("$BUSYBOX" --list); do [ "$a" = busybox ] || ln -sf busybox "$ROOT/bin/$a"; done
echo 'export FROM_PROFILE=yes' >"$ROOT/etc/profile.d/ib.sh"
echo 'export PATH=/opt/tool/bin:$PATH' >"$ROOT/etc/profile.d/path.sh"
echo keep >"$ROOT/etc/victim"
export IMGBUILD_CACHE=$TMP/cache
run() { "$IMGBUILD" run "$@"; }

for code in 0 3 42; do
	rc=0
	run "$ROOT" -- sh -c "exit $code" || rc=$?
	if [ "$rc" = "$code" ]; then ok "exit status $code"; else not_ok "exit status $code: got $rc"; fi
done
rc=0
run "$ROOT" -- sh -c 'kill -TERM $$' || rc=$?
if [ "$rc" = 143 ]; then ok "killed by SIGTERM: 143"; else not_ok "killed by signal: got $rc"; fi
check "profile.d applied, HOME=/root" sh -c "'$IMGBUILD' run '$ROOT' -- sh -c 'echo \$FROM_PROFILE \$HOME \$PATH' | grep -qx 'yes /root /opt/tool/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'"
mkdir -p "$TMP/data" "$TMP/here"
echo bound >"$TMP/data/f"
echo cwdfile >"$TMP/here/mine"
check "--bind: rw bind, the host sees the write" sh -c "'$IMGBUILD' run --bind '$TMP/data:/data' '$ROOT' -- sh -c 'cat /data/f && echo w > /data/w' && grep -qx w '$TMP/data/w'"
check_fails "--bind SRC:DST:ro is read-only" 1 'Read-only' run --bind "$TMP/data:/data:ro" "$ROOT" -- sh -c 'echo x > /data/x'
check "the current directory is /imgbuild/cwd" sh -c "cd '$TMP/here' && '$IMGBUILD' run '$ROOT' -- sh -c 'test \$(pwd) = /imgbuild/cwd && cat mine' | grep -qx cwdfile"
check "without a /bin/sh the command is exec'd directly" sh -c "mkdir -p '$TMP/nosh/bin' && cp '$BUSYBOX' '$TMP/nosh/bin/busybox' && '$IMGBUILD' run '$TMP/nosh' -- /bin/busybox true"

before=$(cd "$ROOT" && find . -printf '%p %s %m %T@\n' | sort | sha256sum)
run "$ROOT" -- sh -c 'echo x > /etc/new; echo y >> /etc/victim; rm -rf /bin/ls /root; mkdir -p /var/lib/x; chmod 700 /etc' >/dev/null 2>&1 || true
after=$(cd "$ROOT" && find . -printf '%p %s %m %T@\n' | sort | sha256sum)
if [ "$before" = "$after" ]; then ok "the tree is unchanged after a run that writes everywhere"; else not_ok "the tree changed"; fi
check_fails "an unknown option is a usage error" 2 'unknown option' run --frobnicate "$ROOT" -- true

# ---- an ordinary user ----
if id ibtest >/dev/null 2>&1 || useradd -M -s /bin/sh ibtest 2>/dev/null; then
	# As after an unpack by that user: the tree is the user's, so root inside
	# (the user mapped to 0) may write everywhere in the throw-away layer.
	UROOT=$TMP/uroot
	cp -a "$ROOT" "$UROOT"
	chown -R ibtest:"$(id -gn ibtest)" "$UROOT"
	before=$(cd "$UROOT" && find . -printf '%p %s %m %T@\n' | sort | sha256sum)
	out=$(cd "$TMP" && runuser -u ibtest -- env IMGBUILD_CACHE="$TMP/ucache" "$IMGBUILD" run "$UROOT" -- sh -c 'id -u; echo $FROM_PROFILE; echo w > /etc/w && cat /etc/w; exit 7' 2>&1) && rc=0 || rc=$?
	if [ "$rc" = 7 ] && [ "$(echo "$out" | tr '\n' ' ')" = "0 yes w " ]; then
		ok "an ordinary user runs the image through a user namespace (root inside, exit status kept)"
	else
		not_ok "ordinary user: rc $rc"; diag "$out"
	fi
	after=$(cd "$UROOT" && find . -printf '%p %s %m %T@\n' | sort | sha256sum)
	if [ "$before" = "$after" ]; then ok "the tree is unchanged after the user's run"; else not_ok "the user's run changed the tree"; fi
	# An MPI rank stays the user inside: the launcher's PMIx server accepts only
	# the job's uid (docs/cluster.md; tests/e2e/slurm.sh runs it under Slurm).
	out=$(cd "$TMP" && runuser -u ibtest -- env IMGBUILD_CACHE="$TMP/ucache" "$IMGBUILD" run --mpi "$UROOT" -- sh -c 'id -u; id -g' 2>/dev/null | tr '\n' ' ') || true
	check "an ordinary user's MPI rank (--mpi) keeps the user's uid and gid inside, not root ($out)" \
		test "$out" = "$(id -u ibtest) $(id -g ibtest) "
else
	skip "no test user"; skip "no test user"; skip "no test user"
fi

# ---- an image file ----
if (cd "$TMP" && "$IMGBUILD" pack "$ROOT" -o "$TMP/img.tar" --epoch 1577836800 >/dev/null 2>&1); then
	rc=0
	out=$(run --allow-unsigned "$TMP/img.tar" -- sh -c 'cat /etc/victim; echo changed > /etc/victim; exit 5' 2>&1) || rc=$?
	if [ "$rc" = 5 ] && echo "$out" | grep -qx keep; then ok "an image file runs from its cached tree"; else
		not_ok "image file: rc $rc"; diag "$out"
	fi
	out=$(run --allow-unsigned "$TMP/img.tar" -- cat /etc/victim 2>&1 || true)
	if [ "$out" = keep ]; then ok "the cached tree is unchanged by a run"; else not_ok "cached tree: $out"; fi
else
	skip "imgbuild pack unavailable"; skip "imgbuild pack unavailable"
fi

# ---- --gpu preflight ----
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$TMP/libcuda.so.1" "$REPO/tests/fixtures/fake-libcuda.c"
mkhost() {	# DIR VERSION [uvm]
	mkdir -p "$1/proc/driver/nvidia" "$1/etc" "$1/dev"
	echo "NVRM version: NVIDIA UNIX x86_64 Kernel Module  $2  Release Build" >"$1/proc/driver/nvidia/version"
	: >"$1/etc/ld.so.conf"
	ldconfig -r "$1" -C /etc/ld.so.cache
	: >"$1/dev/nvidiactl"
	: >"$1/dev/nvidia0"
	[ -z "${3:-}" ] || : >"$1/dev/nvidia-uvm"
}
mkhost "$TMP/old" 470.82.01 uvm
mkhost "$TMP/nouvm" 580.159.04
mkhost "$TMP/good" 580.159.04 uvm
mkdir -p "$ROOT/.imgbuild"
printf 'min_driver = "525.60.13"\narchs = "5.0;6.1"\n' >"$ROOT/.imgbuild/facts.toml"
export IMGBUILD_LIBCUDA=$TMP/libcuda.so.1
check_fails "--gpu refuses a driver older than the image's min_driver" 1 \
	'driver 470\.82\.01 is older than 525\.60\.13' env IMGBUILD_HOST_ROOT="$TMP/old" "$IMGBUILD" run --gpu "$ROOT" -- true
check_fails "--gpu refuses without /dev/nvidia-uvm and names the module" 1 \
	"nvidia-uvm is missing.*modprobe nvidia-uvm" env IMGBUILD_HOST_ROOT="$TMP/nouvm" "$IMGBUILD" run --gpu "$ROOT" -- true
check_fails "--gpu refuses a GPU the archs do not cover" 1 \
	'this image was compiled for sm_50, sm_61; this GPU is sm_90' env IMGBUILD_HOST_ROOT="$TMP/good" FAKE_CUDA_MAJOR=9 "$IMGBUILD" run --gpu "$ROOT" -- true
check_fails "--gpu: same major, lower minor is not covered (sm_61 on sm_60)" 1 \
	'this GPU is sm_60' env IMGBUILD_HOST_ROOT="$TMP/good" FAKE_CUDA_MAJOR=6 FAKE_CUDA_MINOR=0 "$IMGBUILD" run --gpu "$ROOT" -- true
check "--gpu: sm_52 is covered by sm_50 (same major)" env IMGBUILD_HOST_ROOT="$TMP/good" FAKE_CUDA_MAJOR=5 FAKE_CUDA_MINOR=2 "$IMGBUILD" run --gpu "$ROOT" -- true
printf 'min_driver = "525.60.13"\narchs = ["5.0", "6.1+PTX"]\n' >"$ROOT/.imgbuild/facts.toml"
check "--gpu: 6.1+PTX covers sm_90" env IMGBUILD_HOST_ROOT="$TMP/good" FAKE_CUDA_MAJOR=9 "$IMGBUILD" run --gpu "$ROOT" -- true
printf 'min_driver = "525.60.13"\narchs = ["5.0", "6.1"]\nptx_jit = true\n' >"$ROOT/.imgbuild/facts.toml"
check "--gpu: ptx_jit = true covers sm_90" env IMGBUILD_HOST_ROOT="$TMP/good" FAKE_CUDA_MAJOR=9 "$IMGBUILD" run --gpu "$ROOT" -- true
# A Kepler GTX 860M (10de:119a in sysfs) under a 525 driver: past R470, its last branch.
# run --gpu warns with the cause and still runs; under 470 it says nothing of the sort.
mkhost "$TMP/kepler" 525.60.13 uvm
mkhost "$TMP/kepler470" 470.82.01 uvm
for h in kepler kepler470; do
	dev=$TMP/$h/sys/bus/pci/devices/0000:01:00.0
	mkdir -p "$dev" "$TMP/$h/sys/bus/pci/devices/0000:01:00.1"
	printf '0x10de\n' >"$dev/vendor"; printf '0x119a\n' >"$dev/device"; printf '0x030000\n' >"$dev/class"
	# the card's HDMI audio function: not a GPU
	printf '0x10de\n0x0e0a\n0x040300\n' | { read -r v; read -r d; read -r c
		echo "$v" >"$TMP/$h/sys/bus/pci/devices/0000:01:00.1/vendor"; echo "$d" >"$TMP/$h/sys/bus/pci/devices/0000:01:00.1/device"
		echo "$c" >"$TMP/$h/sys/bus/pci/devices/0000:01:00.1/class"; }
done
printf 'min_driver = "410.48"\narchs = ["3.0", "5.0", "6.1+PTX"]\n' >"$ROOT/.imgbuild/facts.toml"
check_fails "--gpu: a Kepler GPU under driver 525 is a warning naming R470, and the command runs" 0 \
	'warning: --gpu: GPU 0000:01:00\.0 \(GeForce GTX 860M, 10de:119a\): driver 525\.60\.13 is newer than R470, the last driver branch for Kepler GPUs \(compute capability 3\.0\)' \
	env IMGBUILD_HOST_ROOT="$TMP/kepler" FAKE_CUDA_MAJOR=3 FAKE_CUDA_MINOR=0 "$IMGBUILD" run --gpu "$ROOT" -- true
check "--gpu: the warning is one line, once" test "$(grep -c 'newer than R470' "$TMP/check.out")" -eq 1
check "--gpu: under driver 470 the same GPU runs with no branch warning" sh -c "
	env IMGBUILD_HOST_ROOT='$TMP/kepler470' FAKE_CUDA_MAJOR=3 FAKE_CUDA_MINOR=0 '$IMGBUILD' run --gpu '$ROOT' -- true >'$TMP/k470.out' 2>&1 &&
	! grep -q 'newer than R' '$TMP/k470.out'"
rm "$ROOT/.imgbuild/facts.toml"
check_fails "--gpu without facts says what is missing" 0 'no \.imgbuild/facts\.toml' \
	env IMGBUILD_HOST_ROOT="$TMP/good" "$IMGBUILD" run --gpu "$ROOT" -- true
check_fails "--gpu with no driver at all" 1 'no NVIDIA driver on this host' \
	env IMGBUILD_HOST_ROOT="$TMP/here" "$IMGBUILD" run --gpu "$ROOT" -- true

finish
