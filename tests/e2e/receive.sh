#!/usr/bin/env bash
# README "Receiving an image", way 2 (plain tools only), run as written: the
# README's two shell blocks are taken from README.md and run in a folder that
# holds gt-cu10.tar (a small image packed here: a static busybox root), its
# .sha256 and .sig, and alice.pub. The driver folder and nvidia-smi are
# fixtures (the block's /usr/lib/x86_64-linux-gnu is pointed at a folder with
# a fake libcuda of 580.159.04; a static "nvidia-smi" is first on PATH), and the
# interactive shell is replaced by checks made inside the chroot.
. "$(dirname "$0")/../lib.sh"
require_root
BUSYBOX=$(command -v busybox || true)
if [ -z "$BUSYBOX" ] || ! file -L "$BUSYBOX" | grep -q 'statically linked'; then
	skip "needs a static busybox (apt-get install busybox-static)"
	finish
fi
export XDG_CONFIG_HOME=$TMP/cfg
W=$TMP/recv
mkdir -p "$TMP/root/bin" "$TMP/root/usr/bin" "$TMP/root/etc" "$TMP/zst" "$W" "$TMP/nv/lib" "$TMP/nv/bin"
cp "$BUSYBOX" "$TMP/root/bin/busybox"
for a in $("$BUSYBOX" --list); do [ "$a" = busybox ] || ln -sf busybox "$TMP/root/bin/$a"; done
ln -s ../../bin/busybox "$TMP/root/usr/bin/env"
"$IMGBUILD" keygen alice -d "$TMP/k" --no-trust >/dev/null
cp "$TMP/k/alice.pub" "$W/alice.pub"
"$IMGBUILD" -q pack "$TMP/root" -o "$W/gt-cu10.tar" --epoch 1577836800 --sign "$TMP/k/alice.sec" >/dev/null
"$IMGBUILD" -q pack "$TMP/root" -o "$TMP/zst/gt-cu10.tar.zst" --zstd --epoch 1577836800 >/dev/null
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$TMP/nv/lib/libcuda.so.580.159.04" "$REPO/tests/fixtures/fake-libcuda.c"
printf '#include <stdio.h>\nint main(void) { puts("NVIDIA-SMI 580.159.04 (fixture)"); return 0; }\n' >"$TMP/smi.c"
gcc -static -O2 -o "$TMP/nv/smi-real" "$TMP/smi.c"
ln -s ../smi-real "$TMP/nv/bin/nvidia-smi"

# The README's fenced sh blocks, in order.
block() { awk -v n="$1" '/^```sh$/ { k++; on = (k == n); next } /^```$/ { on = 0 } on' "$REPO/README.md"; }
CHECK=$(block 1)
ENTER=$(block 2)
check "README has both blocks" test -n "$CHECK" -a -n "$ENTER"

cd "$W"
check_fails "block 1: sha256sum -c, signify-openbsd -C, tar -x" 0 "gt-cu10.tar: OK" bash -e -c "$CHECK"
check "... the tree is unpacked" test -x "$W/gt-cu10/bin/busybox"
zline=$(printf '%s\n' "$CHECK" | sed -n 's/^# a \.tar\.zst: //p')
check "the zstd -d | tar -x line unpacks a .tar.zst" bash -e -c "cd '$TMP/zst' && $zline && test -x gt-cu10/bin/busybox"

# Inside: /proc mounted, the driver library bound read-only with its links,
# nvidia-smi bound and on PATH, the environment as set.
INSIDE='set -e
test -r /proc/self/mountinfo
grep -q " /opt/nvidia/lib/libcuda.so.580.159.04 ro," /proc/self/mountinfo
test "$(readlink /opt/nvidia/lib/libcuda.so.1)" = libcuda.so.580.159.04
test "$(readlink /opt/nvidia/lib/libcuda.so)" = libcuda.so.1
test "$LD_LIBRARY_PATH" = /opt/nvidia/lib
nvidia-smi
if echo x >/opt/nvidia/lib/libcuda.so.580.159.04 2>/dev/null; then echo "library writable"; exit 1; fi
echo inside-ok'
printf '%s\n' "$INSIDE" >"$W/gt-cu10/inside.sh"
script=$(printf '%s\n' "$ENTER" | sed -e "s,/usr/lib/x86_64-linux-gnu,$TMP/nv/lib,g" -e 's,/bin/sh -l$,/bin/sh -x /inside.sh,')
check "the fixture replacements took" sh -c "printf '%s' \"\$1\" | grep -q '$TMP/nv/lib' && printf '%s' \"\$1\" | grep -q 'inside.sh'" _ "$script"
out=$(PATH=$TMP/nv/bin:$PATH bash -e -c "$script" 2>&1) || diag "exit $?"
if printf '%s\n' "$out" | grep -q inside-ok; then
	ok "block 2: unshare, proc/sys/dev, the driver bound read-only, chroot: nvidia-smi runs inside"
else
	not_ok "block 2 inside the chroot"
	diag "$out"
fi
printf '%s\n' "$out" >"$TMP/inside.out"
check "... nvidia-smi printed its fixture line" grep -qx 'NVIDIA-SMI 580.159.04 (fixture)' "$TMP/inside.out"
check "... and nothing stays mounted on the unpacked tree" sh -c "! grep -q '$W/gt-cu10' /proc/self/mountinfo"
finish
