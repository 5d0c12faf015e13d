#!/usr/bin/env bash
# imgbuild-portable on real old userlands: Ubuntu 18.04 (glibc 2.27, from the
# Ubuntu archive) and the oldest Debian release the host's mirror serves. Each
# is bootstrapped (shared test cache), and only imgbuild-portable, a signed
# busybox image with a `hello` program and its public key go inside. There,
# chrooted with /proc mounted in a private mount namespace, it verifies,
# unpacks, exports, runs `hello` as root and as an ordinary user, and pulls the image
# from 127.0.0.1 (by address and through /etc/hosts).
. "$(dirname "$0")/../lib.sh"
require_root
BUSYBOX=$(command -v busybox || true)
if [ -z "$BUSYBOX" ] || ! file -L "$BUSYBOX" | grep -q 'statically linked'; then
	skip "needs a static busybox (apt-get install busybox-static)"
	finish
fi

PORTABLE=$REPO/build/imgbuild-portable
check "make portable" make -C "$REPO" -s -j2 portable
[ -x "$PORTABLE" ] || finish
check "one static file: no program interpreter" sh -c "file '$PORTABLE' | grep -q 'statically linked' && ! readelf -l '$PORTABLE' | grep -q INTERP"
size=$(stat -c %s "$PORTABLE")
check "at most 15 MB ($size bytes)" test "$size" -le $((15 * 1024 * 1024))
diag "$(file -b "$PORTABLE")"

# The image, its signature and key, served over HTTP for pull.
ROOT=$TMP/img
mkdir -p "$ROOT/bin" "$ROOT/etc" "$ROOT/tmp" "$TMP/www"
cp "$BUSYBOX" "$ROOT/bin/busybox"
for a in sh echo cat id; do ln -s busybox "$ROOT/bin/$a"; done
printf '#!/bin/sh\necho "hello from the image, uid $(id -u)"\n' >"$ROOT/bin/hello"
chmod 755 "$ROOT/bin/hello"
"$IMGBUILD" -q pack "$ROOT" -o "$TMP/www/hello.tar" --epoch 1577836800 --sign "$TEST_KEY" >/dev/null
python3 "$REPO/tests/http-server.py" --root "$TMP/www" --port-file "$TMP/port" --log "$TMP/http.log" >/dev/null 2>&1 &
for _ in $(seq 100); do [ -s "$TMP/port" ] && break; sleep 0.1; done
PORT=$(cat "$TMP/port")

use_debian_test_cache
UBUNTU_MIRROR=${IMGBUILD_UBUNTU_MIRROR:-http://archive.ubuntu.com/ubuntu}
DEBIAN_MIRROR=$(host_debian_mirror)

# userland NAME: bootstraps it with imgbuild (base only, cached) into $TMP/NAME.
userland() {
	local name=$1 base=$2
	mkdir -p "$TMP/p-$name/keys" "$TMP/p-$name/stages"
	cp "$REPO/keys/ubuntu-archive-keyring.gpg" "$TMP/p-$name/keys/" 2>/dev/null || true
	printf 'set -eu\ntrue\n' >"$TMP/p-$name/stages/none.sh"
	printf '[image]\nname = "portable-%s"\nsource_date_epoch = 1577836800\n\n%s\n\n[[stage]]\nname = "none"\nscript = "stages/none.sh"\n' \
		"$name" "$base" >"$TMP/p-$name/m.toml"
	(cd "$TMP" && "$IMGBUILD" -q build "$TMP/p-$name/m.toml" -o "$TMP/$name.tar" --build-dir "$TMP/b-$name") &&
		"$IMGBUILD" -q unpack --allow-unsigned "$TMP/$name.tar" "$TMP/$name" &&
		rm -f "$TMP/$name.tar" "$TMP/$name.tar.sha256"
}

# in_chroot NAME [--userspec=U:G] CMD...: a private mount namespace whose
# root is the userland (pivot_root, then the userland's own chroot and env: the
# kernel refuses a user namespace to a process whose root is not its mount
# namespace's, so a plain chroot could not run rootless), with /proc, /dev, /sys.
in_chroot() {
	local r=$TMP/$1 spec=()
	shift
	if [[ $1 == --userspec=* ]]; then
		spec=("$1" "--groups=${1#*:}")
		shift
	fi
	unshare -m --propagation private sh -c 'r=$1; shift
		mount --bind "$r" "$r" && mount -t proc proc "$r/proc" && mount --rbind /dev "$r/dev" &&
		mount --rbind /sys "$r/sys" && mkdir -p "$r/.oldroot" && cd "$r" && pivot_root . .oldroot &&
		umount -l /.oldroot && exec env -u IMGBUILD_CACHE chroot "$@"' \
		sh "$r" "${spec[@]}" / "$@"
}

receive_in() {	# NAME GLIBC-PATTERN
	local name=$1 R=$TMP/$1
	mkdir -p "$R/srv" "$R/usr/local/bin" "$R/proc" "$R/dev" "$R/sys"
	cp "$PORTABLE" "$R/usr/local/bin/imgbuild-portable"
	cp "$TMP/www/hello.tar" "$TMP/www/hello.tar.sha256" "$TMP/www/hello.tar.sig" "$TEST_PUB" "$R/srv/"
	local pub=/srv/$(basename "$TEST_PUB") P=/usr/local/bin/imgbuild-portable
	check "$name: its own glibc is $2" sh -c "chroot '$R' ldd --version 2>&1 | head -1 | grep -E '$2'"
	check "$name: nothing of imgbuild's but the one file" sh -c "! chroot '$R' sh -c 'ls /usr/lib/x86_64-linux-gnu/libarchive.so.13 /usr/lib/x86_64-linux-gnu/libcurl.so.4' 2>/dev/null | grep -q ."
	check "$name: verify" in_chroot "$name" "$P" verify /srv/hello.tar --key "$pub"
	check "$name: unpack" in_chroot "$name" sh -c "$P unpack /srv/hello.tar /srv/out --key $pub && test -x /srv/out/bin/hello"
	check_fails "$name: run -- hello as root" 0 "^hello from the image, uid 0$" \
		in_chroot "$name" "$P" run --key "$pub" /srv/hello.tar -- hello
	check "$name: export to an OCI archive" in_chroot "$name" sh -c "$P export /srv/hello.tar -o /srv/oci.tar --key $pub && test -s /srv/oci.tar"
	check_fails "$name: advise with the rules carried inside the file" 0 "compute cap\. +6\.1" in_chroot "$name" "$P" advise "GTX 1080"
	chroot "$R" sh -c 'id ibportable >/dev/null 2>&1 || useradd -m -u 4242 ibportable'
	check_fails "$name: run -- hello as an ordinary user (a user namespace)" 0 "^hello from the image, uid 0$" \
		in_chroot "$name" --userspec=4242:4242 env HOME=/home/ibportable "$P" run --key "$pub" /srv/hello.tar -- hello
	if ! "$PORTABLE" pull --help >/dev/null 2>&1; then
		skip "pull not built"
		return
	fi
	check "$name: pull from 127.0.0.1" in_chroot "$name" sh -c "$P pull http://127.0.0.1:$PORT/hello.tar -o /srv/pulled.tar --key $pub && cmp /srv/pulled.tar /srv/hello.tar"
	echo "127.0.0.1 imgbuild-portable-test" >>"$R/etc/hosts"
	check "$name: pull through a name in /etc/hosts (NSS without modules)" in_chroot "$name" \
		sh -c "$P pull http://imgbuild-portable-test:$PORT/hello.tar -o /srv/named.tar --key $pub && test -s /srv/named.tar"
}

if ubuntu_archive_answers && [ -f "$REPO/keys/ubuntu-archive-keyring.gpg" ]; then
	if userland bionic "$(printf '[base]\ndistro = "ubuntu"\nsuite = "bionic"\nmirrors = ["%s"]\ncomponents = ["main"]\nkeyring = "keys/ubuntu-archive-keyring.gpg"' "$UBUNTU_MIRROR")" >"$TMP/bionic.out" 2>&1; then
		ok "Ubuntu 18.04 bootstrapped"
		receive_in bionic 'GLIBC 2\.27'
	else
		not_ok "Ubuntu 18.04 bootstrap"
		tail -n 20 "$TMP/bionic.out" | sed 's/^/# /'
	fi
else
	skip "skipped: Ubuntu archive unreachable"
fi

# The oldest Debian release the host's mirror still serves.
OLDEST=
for s in stretch buster bullseye bookworm; do
	if curl -sf -m 10 -o /dev/null "$DEBIAN_MIRROR/dists/$s/Release"; then OLDEST=$s; break; fi
done
if [ -z "$OLDEST" ]; then
	not_ok "no Debian release found on the host's mirror"
	finish
fi
diag "oldest Debian release on the host's mirror: $OLDEST"
if userland "$OLDEST" "$(printf '[base]\ndistro = "debian"\nsuite = "%s"' "$OLDEST")" >"$TMP/debian.out" 2>&1; then
	ok "Debian $OLDEST bootstrapped"
	receive_in "$OLDEST" 'GLIBC|GNU libc'
else
	not_ok "Debian $OLDEST bootstrap"
	tail -n 20 "$TMP/debian.out" | sed 's/^/# /'
fi
finish
