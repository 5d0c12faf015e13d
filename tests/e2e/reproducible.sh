#!/usr/bin/env bash
# Reproducible images: the demo manifest built twice, in two separate caches (so
# the second build re-runs the bootstrap and every stage: no layer is shared),
# two build folders, two working folders, at two different times, with umask
# 022 vs 077, TZ=UTC vs Asia/Tokyo and LC_ALL C.UTF-8 vs C, gives byte-identical
# images. The downloads (the .debs and the hello tarball, content-addressed)
# are shared, so the second build costs no network: they are hard-linked from
# the shared test cache into the first cache, and from the first into the
# second. On a mismatch the two listings are compared to say what differs.
source "$(dirname "$0")/../lib.sh"
require_root

if ! host_debian_mirror >/dev/null; then
	skip "no Debian mirror in the host's apt configuration"
	finish
fi
MANIFEST=$REPO/manifests/demo.toml
SHARED_CACHE=${IMGBUILD_TEST_CACHE:-/var/cache/imgbuild-test}

# seed_store FROM TO: the content-addressed downloads of cache FROM, hard-linked
# (copied across file systems) into cache TO, and copies of its .deb indexes.
# Layers, packs and ccache are not shared.
seed_store() {
	local from=$1 to=$2
	mkdir -p "$to/downloads/sha256" "$to/debs"
	if [ -d "$from/downloads/sha256" ]; then
		cp -al "$from/downloads/sha256/." "$to/downloads/sha256/" 2>/dev/null ||
			cp -a "$from/downloads/sha256/." "$to/downloads/sha256/"
	fi
	# Copies, not links: a build appends to its index.
	if [ -d "$from/debs" ]; then
		find "$from/debs" -maxdepth 1 -name '*.index' -exec cp -t "$to/debs/" {} +
	fi
}

# build N UMASK TZ LC_ALL: build number N in its own cache, build and working folder.
build() {
	local n=$1 mask=$2 tz=$3 lc=$4
	mkdir -p "$TMP/cwd$n"
	(
		cd "$TMP/cwd$n" || exit 1
		umask "$mask"
		export TZ=$tz LC_ALL=$lc IMGBUILD_CACHE=$TMP/cache$n TMPDIR=$TMP/cwd$n
		exec "$IMGBUILD" build "$MANIFEST" -o "$TMP/cwd$n/demo-$n.tar" --build-dir "$TMP/bd$n"
	) >"$TMP/build$n.out" 2>&1
}

seed_store "$SHARED_CACHE" "$TMP/cache1"
start=$SECONDS
if build 1 022 UTC C.UTF-8; then
	ok "first build (umask 022, TZ=UTC, $((SECONDS - start)) s)"
else
	not_ok "first build"
	sed 's/^/# /' "$TMP/build1.out" | tail -n 40
	finish
fi
t1=$((SECONDS - start))
sleep 1.5
seed_store "$TMP/cache1" "$TMP/cache2"
start=$SECONDS
if build 2 077 Asia/Tokyo C; then
	ok "second build (umask 077, TZ=Asia/Tokyo, $((SECONDS - start)) s)"
else
	not_ok "second build"
	sed 's/^/# /' "$TMP/build2.out" | tail -n 40
	finish
fi
t2=$((SECONDS - start))
diag "build times: first $t1 s, second $t2 s"
check "the second build bootstrapped again" grep -qE 'bootstrap: debian bookworm with' "$TMP/build2.out"
check "the second build ran every stage" grep -q 'stages run: toolchain, hello, check' "$TMP/build2.out"

d1=$(sha256sum "$TMP/cwd1/demo-1.tar" | cut -d' ' -f1)
d2=$(sha256sum "$TMP/cwd2/demo-2.tar" | cut -d' ' -f1)
diag "digest 1: $d1"
diag "digest 2: $d2"
if [ "$d1" = "$d2" ]; then
	ok "both builds give byte-identical images"
else
	not_ok "both builds give byte-identical images"
	for n in 1 2; do
		tar -xOf "$TMP/cwd$n/demo-$n.tar" ./.imgbuild/listing >"$TMP/listing$n" 2>/dev/null || true
		tar -xOf "$TMP/cwd$n/demo-$n.tar" ./.imgbuild/facts.toml >"$TMP/facts$n" 2>/dev/null || true
		tar -xOf "$TMP/cwd$n/demo-$n.tar" ./.imgbuild/lock >"$TMP/lock$n" 2>/dev/null || true
	done
	diag "listing differences (first build <, second >):"
	diff "$TMP/listing1" "$TMP/listing2" | grep '^[<>]' | head -n 40 | sed 's/^/#   /'
	diff "$TMP/facts1" "$TMP/facts2" | grep '^[<>]' | head -n 10 | sed 's/^/#   facts /'
	diff "$TMP/lock1" "$TMP/lock2" | grep '^[<>]' | head -n 10 | sed 's/^/#   lock /'
fi
check "each sidecar .sha256 holds its image's digest" sh -c \
	"cd '$TMP/cwd1' && sha256sum -c demo-1.tar.sha256 && cd '$TMP/cwd2' && sha256sum -c demo-2.tar.sha256"
check "the image verifies" "$IMGBUILD" verify "$TMP/cwd2/demo-2.tar" --allow-unsigned
finish
