#!/usr/bin/env bash
# Host NVIDIA driver discovery and binding against a fixture host tree made
# here ($IMGBUILD_HOST_ROOT): ELF libraries registered in an ld.so.cache made by
# the host's own ldconfig, one of another version, GLVND and GLX libraries
# that must not be bound, a fake nvidia-smi, device nodes, the persistenced socket.
. "$(dirname "$0")/../lib.sh"
require_root
BUSYBOX=$(command -v busybox || true)
if [ -z "$BUSYBOX" ] || ! file -L "$BUSYBOX" | grep -q 'statically linked'; then
	skip "needs a static busybox (apt-get install busybox-static)"
	exit 0
fi
VER=580.159.04
HOST=$TMP/host
LIBDIR=$HOST/usr/lib/x86_64-linux-gnu

mklib() {	# path soname
	gcc -shared -fPIC -Wl,-soname,"$2" -o "$1" "$REPO/tests/fixtures/fake-libcuda.c"
}
mkdir -p "$LIBDIR" "$HOST/usr/lib/old" "$HOST/usr/bin" "$HOST/etc" "$HOST/proc/driver/nvidia" \
	"$HOST/dev/nvidia-caps" "$HOST/var/run/nvidia-persistenced"
mklib "$LIBDIR/libcuda.so.$VER" libcuda.so.1
mklib "$LIBDIR/libnvidia-ml.so.$VER" libnvidia-ml.so.1
mklib "$HOST/usr/lib/old/libcuda.so.470.82.01" libcuda.so.1	# another version: never bound
mklib "$LIBDIR/libGLX.so.0.0.0" libGLX.so.0	# GLVND loader: never bound
mklib "$LIBDIR/libGLX_nvidia.so.$VER" libGLX_nvidia.so.0	# not in the compute/utility sets
printf '/usr/lib/x86_64-linux-gnu\n/usr/lib/old\n' >"$HOST/etc/ld.so.conf"
# With -r, ldconfig chroots: -C names the cache inside the root.
ldconfig -r "$HOST" -C /etc/ld.so.cache
printf '#!/bin/sh\necho "NVIDIA-SMI %s (fixture)"\n' "$VER" >"$HOST/usr/bin/nvidia-smi"
chmod 755 "$HOST/usr/bin/nvidia-smi"
echo "NVRM version: NVIDIA UNIX x86_64 Kernel Module  $VER  Release Build  (dvs-builder@U16-I2-C01-21-5)  Sun Sep 21 2025" \
	>"$HOST/proc/driver/nvidia/version"
mknod "$HOST/dev/nvidiactl" c 195 255
mknod "$HOST/dev/nvidia0" c 195 0
mknod "$HOST/dev/nvidia-uvm" c 237 0
mknod "$HOST/dev/nvidia-caps/nvidia-cap1" c 238 1
python3 -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])" \
	"$HOST/var/run/nvidia-persistenced/socket"

check "ldconfig wrote the fixture's cache" test -s "$HOST/etc/ld.so.cache"
IMGBUILD_HOST_ROOT=$HOST "$IMGBUILD" driver >"$TMP/driver.out" 2>&1 || true
sed 's/^/# /' "$TMP/driver.out"
got_libs=$(grep -o 'lib[A-Za-z_-]*\.so\.[0-9.]* ->' "$TMP/driver.out" | sed 's/ ->//' | sort | tr '\n' ' ')
if [ "$got_libs" = "libcuda.so.$VER libnvidia-ml.so.$VER " ]; then
	ok "imgbuild driver lists exactly libcuda and libnvidia-ml of $VER"
else
	not_ok "libraries listed: $got_libs"
fi
check "version is reported" grep -q "NVIDIA driver $VER" "$TMP/driver.out"
check_fails "no other version, no GLVND or GLX library" 1 'x' sh -c "grep -E '470\\.82|libGLX' '$TMP/driver.out' && exit 0; echo x; exit 1"
check "nvidia-smi found" grep -q "$HOST/usr/bin/nvidia-smi -> /imgbuild/driver/bin/nvidia-smi" "$TMP/driver.out"
got_devs=$(grep -o ' -> /dev/[a-z0-9/-]*' "$TMP/driver.out" | sed 's/ -> //' | tr '\n' ' ')
if [ "$got_devs" = "/dev/nvidiactl /dev/nvidia0 /dev/nvidia-uvm /dev/nvidia-caps/nvidia-cap1 " ]; then
	ok "devices: $got_devs"
else
	not_ok "devices listed: $got_devs"
fi
check "persistenced socket found" grep -q "nvidia-persistenced/socket -> /var/run/nvidia-persistenced/socket" "$TMP/driver.out"
check "SONAME links announced" grep -q "links libcuda.so.1, libcuda.so" "$TMP/driver.out"
mkdir -p "$TMP/empty"
# A wrapper script in /usr/bin that execs the real tool elsewhere (seen on the
# GPU machine): the real executable is bound, not the wrapper.
cp -a "$HOST" "$TMP/host2"
mkdir -p "$TMP/host2/usr/local/nvidia/bin"
cp /bin/true "$TMP/host2/usr/local/nvidia/bin/nvidia-smi"
IMGBUILD_HOST_ROOT="$TMP/host2" "$IMGBUILD" driver >"$TMP/driver2.out" 2>&1 || true
check "a wrapper script loses to the real nvidia-smi" grep -q "$TMP/host2/usr/local/nvidia/bin/nvidia-smi -> /imgbuild/driver/bin/nvidia-smi" "$TMP/driver2.out"
# The GPU machine's layout, generalised: /usr/bin/nvidia-smi a wrapper script
# that execs a path through a chain of symlinks (absolute, then relative) to a
# file with another name. The file that runs is bound, under the tool's name.
cp -a "$HOST" "$TMP/host3"
H3=$TMP/host3
mkdir -p "$H3/opt/nvidia/bin" "$H3/etc/alternatives" "$H3/usr/lib/nvidia/$VER"
printf '#include <stdio.h>\nint main(int c, char **v) { printf("NVIDIA-SMI %s real binary%%s%%s\\n", c > 1 ? " " : "", c > 1 ? v[1] : ""); return 0; }\n' "$VER" >"$TMP/smi.c"
gcc -static -O2 -o "$H3/usr/lib/nvidia/$VER/nvidia-smi.real" "$TMP/smi.c"
ln -s /etc/alternatives/nvidia-smi "$H3/opt/nvidia/bin/nvidia-smi"
ln -s "../../usr/lib/nvidia/$VER/nvidia-smi.real" "$H3/etc/alternatives/nvidia-smi"
printf '#!/bin/sh\n# wrapper, as on the GPU host\nNVSMI_WRAPPED=1\nexport NVSMI_WRAPPED\nexec /opt/nvidia/bin/nvidia-smi "$@"\n' >"$H3/usr/bin/nvidia-smi"
chmod 755 "$H3/usr/bin/nvidia-smi"
IMGBUILD_HOST_ROOT="$H3" "$IMGBUILD" driver >"$TMP/driver3.out" 2>&1 || true
check "a wrapper script and a symlink chain are followed to the real file" \
	grep -qx "  $H3/usr/lib/nvidia/$VER/nvidia-smi.real -> /imgbuild/driver/bin/nvidia-smi" "$TMP/driver3.out"
check_fails "no driver: says so and exits 0" 0 'no NVIDIA driver found' env IMGBUILD_HOST_ROOT="$TMP/empty" "$IMGBUILD" driver

# ---- bound into a run ----
ROOT=$TMP/root
mkdir -p "$ROOT/bin" "$ROOT/etc" "$ROOT/run" "$ROOT/var" "$ROOT/.imgbuild"
ln -s ../run "$ROOT/var/run"
cp "$BUSYBOX" "$ROOT/bin/busybox"
for a in $("$BUSYBOX" --list); do [ "$a" = busybox ] || ln -sf busybox "$ROOT/bin/$a"; done
printf 'min_driver = "525.60.13"\narchs = ["8.0", "9.0"]\n' >"$ROOT/.imgbuild/facts.toml"
before=$(cd "$ROOT" && find . -printf '%p %s %T@\n' | sort | sha256sum)
cat >"$TMP/inside.sh" <<EOF
set -e
L=/imgbuild/driver/lib
echo "libs: \$(ls \$L | tr '\n' ' ')"
test "\$(readlink \$L/libcuda.so.1)" = libcuda.so.$VER
test "\$(readlink \$L/libcuda.so)" = libcuda.so.1
test "\$(readlink \$L/libnvidia-ml.so.1)" = libnvidia-ml.so.$VER
nvidia-smi | grep -q "NVIDIA-SMI $VER"
if echo x 2>/dev/null > \$L/libcuda.so.$VER; then echo "library writable"; exit 1; fi
grep " \$L/libcuda.so.$VER " /proc/self/mountinfo | grep -q ' ro,nosuid,nodev'
test -c /dev/nvidia0 && test -c /dev/nvidiactl && test -c /dev/nvidia-uvm && test -c /dev/nvidia-caps/nvidia-cap1
grep ' /dev/nvidia0 ' /proc/self/mountinfo | grep ' ro,nosuid,noexec' | grep -vq nodev
test -S /var/run/nvidia-persistenced/socket
case "\$LD_LIBRARY_PATH" in /imgbuild/driver/lib*) ;; *) echo "LD_LIBRARY_PATH=\$LD_LIBRARY_PATH"; exit 1 ;; esac
case "\$PATH" in /imgbuild/driver/bin:*) ;; *) echo "PATH=\$PATH"; exit 1 ;; esac
if ls \$L | grep -qE '470|GLX'; then echo "wrong library bound"; exit 1; fi
echo inside-ok
EOF
cp "$TMP/inside.sh" "$TMP/cwd-inside.sh"
out=$(cd "$TMP" && IMGBUILD_HOST_ROOT=$HOST "$IMGBUILD" run --gpu "$ROOT" -- sh /imgbuild/cwd/cwd-inside.sh 2>&1 || true)
if echo "$out" | grep -q inside-ok; then
	ok "run --gpu: driver files read-only at /imgbuild/driver, SONAME links, nvidia-smi from PATH, devices, socket"
else
	not_ok "run --gpu with the fixture driver"; diag "$out"
fi
check "the libraries bound are exactly the running version's" sh -c "echo '$out' | grep -qx 'libs: libcuda.so libcuda.so.1 libcuda.so.$VER libnvidia-ml.so libnvidia-ml.so.1 libnvidia-ml.so.$VER '"
after=$(cd "$ROOT" && find . -printf '%p %s %T@\n' | sort | sha256sum)
leftover=$(find "$ROOT" \( -name '*nvidia*' -o -name '*cuda*' -o -name imgbuild \) -print)
if [ "$before" = "$after" ] && [ -z "$leftover" ]; then
	ok "nothing driver-related in the tree afterwards"
else
	not_ok "tree changed: $leftover"
fi

# The real binary of the wrapper fixture runs in the sandbox under its tool's name.
out3=$(IMGBUILD_HOST_ROOT=$H3 "$IMGBUILD" run --gpu "$ROOT" -- nvidia-smi -L 2>&1) && rc3=0 || rc3=$?
check "run --gpu -- nvidia-smi runs the real binary behind the wrapper (exit $rc3: $out3)" \
	test "$rc3" -eq 0 -a "$out3" = "NVIDIA-SMI $VER real binary -L"
finish
