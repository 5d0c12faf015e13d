#!/usr/bin/env bash
# Old kernels (Ubuntu 18.04's 4.15): under build/oldkernel every system call
# newer than 4.15 (pidfd_open, clone3, openat2, close_range, mount_setattr...)
# answers ENOSYS and overlayfs is refused in a user namespace. imgbuild still
# verifies, unpacks and runs an image, as root and as an ordinary user, and a
# build still runs a stage and still stops on SIGINT (its pidfd fallback).
. "$(dirname "$0")/../lib.sh"
require_root
OLD=$REPO/build/oldkernel
BUSYBOX=$(command -v busybox || true)
if [ -z "$BUSYBOX" ] || ! file -L "$BUSYBOX" | grep -q 'statically linked'; then
	skip "needs a static busybox (apt-get install busybox-static)"
	exit 0
fi
[ -x "$OLD" ] || { not_ok "build/oldkernel missing (make all)"; finish; }
chmod 755 "$TMP"
U=ibportable-old
trap 'userdel "$U" 2>/dev/null || true; _lib_cleanup' EXIT
id "$U" >/dev/null 2>&1 || useradd -M -s /bin/sh "$U"

# The filter itself, so a pass below means something.
check_fails "the filter answers ENOSYS to pidfd_open" 1 "Function not implemented" "$OLD" python3 -c 'import os; os.pidfd_open(os.getpid())'
check "... and nothing to plain calls" "$OLD" python3 -c 'import os; os.close(os.open("/", os.O_RDONLY))' 
mkdir -p "$TMP/ov/l" "$TMP/ov/u" "$TMP/ov/w" "$TMP/ov/m"
check_fails "the filter refuses overlayfs in a user namespace" 1 "ENOSYS|ermission denied|not permitted" \
	"$OLD" unshare -Urm sh -c "mount -t overlay overlay -o lowerdir=$TMP/ov/l,upperdir=$TMP/ov/u,workdir=$TMP/ov/w $TMP/ov/m || exit 1"

ROOT=$TMP/root
mkdir -p "$ROOT/bin" "$ROOT/etc" "$ROOT/tmp"
cp "$BUSYBOX" "$ROOT/bin/busybox"
for a in sh echo cat id; do ln -s busybox "$ROOT/bin/$a"; done
printf '#!/bin/sh\necho hello from the image\n' >"$ROOT/bin/hello"
chmod 755 "$ROOT/bin/hello"
# An xattr on a file and on a folder: pack's walk lists them with listxattrat
# where the kernel has it, and by path under the filter.
python3 -c 'import os, sys; [os.setxattr(p, "user.oldkernel", b"kept", follow_symlinks=False) for p in sys.argv[1:]]' "$ROOT/bin/hello" "$ROOT/etc"
"$IMGBUILD" -q pack "$ROOT" -o "$TMP/img.tar" --epoch 1577836800 --sign "$TEST_KEY" >/dev/null
check_fails "the filter answers ENOSYS to listxattrat (Linux 6.13)" 0 "^Function not implemented$" "$OLD" python3 -c \
	'import ctypes, os; c = ctypes.CDLL(None, use_errno=True); c.syscall(465, -100, b"/", 0x100, None, 0); print(os.strerror(ctypes.get_errno()))'
# Without io_uring, openat2 or listxattrat: the same bytes, xattrs included
# (the same file name too: it is the image's name in its facts).
mkdir "$TMP/old"
check "root: pack (no io_uring, openat2 or listxattrat)" "$OLD" "$IMGBUILD" -q pack "$ROOT" -o "$TMP/old/img.tar" --epoch 1577836800
check "... gives the very image packed with them" cmp "$TMP/img.tar" "$TMP/old/img.tar"
check "... which holds both xattrs" sh -c "[ \$(grep -ac 'xattr.user.oldkernel=kept' '$TMP/old/img.tar') -eq 2 ]"
chmod 644 "$TMP"/img.tar*
export IMGBUILD_CACHE=$TMP/cache

check "root: verify" "$OLD" "$IMGBUILD" verify "$TMP/img.tar" --key "$TEST_PUB"
check "root: unpack" "$OLD" "$IMGBUILD" unpack "$TMP/img.tar" "$TMP/out" --key "$TEST_PUB"
check "root: the unpacked tree has the program" test -x "$TMP/out/bin/hello"
check_fails "root: run an image file" 0 "^hello from the image$" "$OLD" "$IMGBUILD" run --key "$TEST_PUB" "$TMP/img.tar" -- hello
mkdir -p "$TMP/data" && echo bound >"$TMP/data/f" && chmod -R a+rX "$TMP/data"
check_fails "root: --bind (resolved in the root without openat2)" 0 "^bound$" \
	"$OLD" "$IMGBUILD" run --bind "$TMP/data:/data:ro" --key "$TEST_PUB" "$TMP/img.tar" -- cat /data/f
check_fails "root: run in a user namespace (--user-ns: no overlayfs there)" 0 "^0 ok$" \
	"$OLD" "$IMGBUILD" run --user-ns --key "$TEST_PUB" "$TMP/img.tar" -- sh -c 'echo ok > /tmp/w; echo "$(id -u) $(cat /tmp/w)"'

as_user() { runuser -u "$U" -- env HOME="$TMP/home" IMGBUILD_CACHE="$TMP/home/cache" "$OLD" "$IMGBUILD" "$@"; }
mkdir -p "$TMP/home" && chown "$U" "$TMP/home"
check "user: verify" as_user verify "$TMP/img.tar" --key "$TEST_PUB"
check "user: unpack" as_user unpack "$TMP/img.tar" "$TMP/home/out" --key "$TEST_PUB"
check_fails "user: run an image file (read-only root, writes to tmpfs)" 0 "^hello from the image$" \
	as_user run --key "$TEST_PUB" "$TMP/img.tar" -- hello
check_fails "user: ... through the fallback for a refused overlayfs" 0 "overlay refused in the user namespace" \
	as_user -v run --key "$TEST_PUB" "$TMP/img.tar" -- true
check_fails "user: --bind" 0 "^bound$" as_user run --bind "$TMP/data:/data:ro" --key "$TEST_PUB" "$TMP/img.tar" -- cat /data/f
check_fails "user: run the unpacked folder" 0 "^0$" as_user run "$TMP/home/out" -- id -u
check "the image's tree is unchanged" sh -c "! test -e '$TMP/home/out/tmp/w' && ! test -e '$TMP/out/tmp/w'"

# A build: its stage is waited for without pidfd_open (SIGCHLD instead).
use_debian_test_cache
P=$TMP/p
NONCE="$(date +%s%N)-$$"	# the stage runs, never cached
mkdir -p "$P/stages"
printf 'set -eu\necho hi > /etc/oldkernel\n' >"$P/stages/one.sh"
printf 'set -eu\necho SLOW_STARTED; sleep 60; echo SLOW_DONE\n' >"$P/stages/slow.sh"
manifest() {
	printf '[image]\nname = "oldkernel"\nsource_date_epoch = 1700000000\n\n[base]\ndistro = "debian"\nsuite = "bookworm"\n'
	printf '\n[env]\nTEST_NONCE = "%s"\n' "$NONCE"
	for s in "$@"; do printf '\n[[stage]]\nname = "%s"\nscript = "stages/%s.sh"\n' "$s" "$s"; done
}
manifest one >"$P/a.toml"
manifest one slow >"$P/s.toml"
cd "$TMP"
check "a build runs a stage" "$OLD" "$IMGBUILD" -q build "$P/a.toml" -o "$TMP/b.tar" --build-dir "$TMP/b"
"$OLD" "$IMGBUILD" build "$P/s.toml" -o "$TMP/s.tar" --build-dir "$TMP/s" >"$TMP/s.out" 2>&1 &
pid=$!
for _ in $(seq 600); do grep -q SLOW_STARTED "$TMP/s/logs/slow.log" 2>/dev/null && break; sleep 0.1; done
kill -INT $pid
rc=0
wait $pid || rc=$?
check "SIGINT stops a build's stage: exit 130 (got $rc), said so, the stage did not finish" \
	sh -c "[ $rc -eq 130 ] && grep -q 'interrupted by SIGINT' '$TMP/s.out' && ! grep -q SLOW_DONE '$TMP/s/logs/slow.log'"
finish
