#!/usr/bin/env bash
# A full disk during a build: in the bootstrap, in a stage and in the pack
# (the image, then the .sha256 beside it). Each file system that fills is a
# small tmpfs mounted only inside `unshare -m --propagation private`
# (tests/faults/in-tmpfs.sh), where imgbuild runs with its output, cache or
# build folder on it; the host's mount table never holds it. Each case must
# fail with exit 1 and a message that says the disk is full, leave nothing at
# the output path and leave the cache intact (no unfinished layer, every layer
# and download as it was); the pack cases then pack the same cache into a
# file system with room, and get the undisturbed build's digest.
source "$(dirname "$0")/../lib.sh"
source "$REPO/tests/faults/lib.sh"
faults_require_demo

make_sentinel
host_state "$TMP/host.before"
reference_build
export IMGBUILD DEMO SHARED_CACHE BASE_KEY
RES=$TMP/res
mkdir -p "$RES"
export RES

# in_tmpfs SIZE DIR [SIZE DIR]... -- FUNCTION: runs FUNCTION (defined here)
# in a private mount namespace with those tmpfs mounted.
in_tmpfs() {
	local args=()
	while [ "$1" != -- ]; do args+=("$1" "$2"); shift 2; done
	shift
	unshare -m --propagation private "$FAULTS/in-tmpfs.sh" "${args[@]}" -- \
		bash -c "set -uo pipefail; $(declare -f "$1" tree_listing store_intact); $1"
}
# store_intact DIR: every download is still named by its own sha256.
store_intact() {
	local f bad=0
	for f in "$1"/downloads/sha256/*; do
		[ -f "$f" ] || continue
		[ "$(sha256sum "$f" | cut -d' ' -f1)" = "${f##*/}" ] || { echo "corrupt download: $f"; bad=1; }
	done
	return $bad
}
says_disk_full() { grep -qiE 'no space left|disk (is )?full|ENOSPC' "$1"; }

# ---- 1. the bootstrap fills the disk (cache and output in a 160 MiB tmpfs) ----
T=$TMP/full-a
case_bootstrap() {
	mkdir -p "$T/cache" "$T/out"
	# The bookworm .debs of the shared cache: the bootstrap needs no download to
	# fill the disk. Only that suite's (the whole store, bionic's too, would not
	# fit), and never a half-copied file: it would look like a corrupt entry.
	mkdir -p "$T/cache/downloads/sha256" "$T/cache/debs"
	idx=$SHARED_CACHE/debs/debian-bookworm.index
	if [ -f "$idx" ]; then
		cp "$idx" "$T/cache/debs/"
		while read -r _ sum; do
			cp "$SHARED_CACHE/downloads/sha256/$sum" "$T/cache/downloads/sha256/.part" 2>/dev/null &&
				mv "$T/cache/downloads/sha256/.part" "$T/cache/downloads/sha256/$sum" ||
				{ rm -f "$T/cache/downloads/sha256/.part"; break; }
		done <"$idx"
	fi
	tree_listing "$T/cache/downloads" >"$RES/a.store.before"
	IMGBUILD_CACHE=$T/cache timeout 600 "$IMGBUILD" build "$DEMO" -o "$T/out/demo.tar" \
		--build-dir "$T/build" >"$RES/a.out" 2>&1
	echo $? >"$RES/a.rc"
	ls -A "$T/out" >"$RES/a.outdir"
	ls -A "$T/cache/layers" >"$RES/a.layers" 2>/dev/null
	tree_listing "$T/cache/downloads" >"$RES/a.store.after"
	store_intact "$T/cache" >"$RES/a.store" 2>&1
	echo $? >>"$RES/a.store"
	df -k "$T" | tail -n 1 >"$RES/a.df"
}
export T
t0=$SECONDS
in_tmpfs 160M "$T" -- case_bootstrap
diag "1: $(cat "$RES/a.df" 2>/dev/null); last words: $(tail -n 1 "$RES/a.out" 2>/dev/null)"
if [ "$(cat "$RES/a.rc" 2>/dev/null)" = 1 ] && says_disk_full "$RES/a.out"; then
	ok "1. bootstrap on a full disk: exit 1, says the disk is full ($((SECONDS - t0)) s)"
else
	not_ok "1. bootstrap on a full disk: exit $(cat "$RES/a.rc" 2>/dev/null), wanted 1 and 'No space left on device'"
	sed 's/^/# /' "$RES/a.out" | tail -n 20
fi
check "1. nothing at the output path" test ! -s "$RES/a.outdir"
check "1. no unfinished base layer left in the cache" test ! -s "$RES/a.layers"
check "1. the downloads in the cache intact" sh -c "tail -n 1 '$RES/a.store' | grep -qx 0 && diff -u '$RES/a.store.before' '$RES/a.store.after'"
check "1. host mount table and files unchanged" host_unchanged "$TMP/host.before"

# ---- 2. a stage fills the disk (cache and build folder in a tmpfs with room
#         for the base and 32 MiB more) ----
P=$TMP/proj
demo_project "$P"
{
	demo_head diskfull-test
	printf '[env]\nTEST_NONCE = "%s"\n\n' "$(date +%s%N)-$$"
	printf '[[stage]]\nname = "fill"\nscript = "../stages/fill.sh"\n'
} >"$P/manifests/fill.toml"
cat >"$P/stages/fill.sh" <<'EOF'
#!/bin/sh
set -eu
echo "filling the disk"
dd if=/dev/zero of=/var/tmp/fill bs=1M count=4096
echo "FILL_DID_NOT_FAIL"
EOF
export P
T=$TMP/full-b
BASE_KB=$(du -sk "$SHARED_CACHE/layers/$BASE_KEY" | cut -f1)
case_stage() {
	mkdir -p "$T/cache/layers" "$T/out"
	cp -a "$SHARED_CACHE/layers/$BASE_KEY" "$T/cache/layers/"
	tree_listing "$T/cache/layers/$BASE_KEY" >"$RES/b.base.before"
	IMGBUILD_CACHE=$T/cache timeout 600 "$IMGBUILD" build "$P/manifests/fill.toml" -o "$T/out/fill.tar" \
		--build-dir "$T/build" >"$RES/b.out" 2>&1
	echo $? >"$RES/b.rc"
	ls -A "$T/out" >"$RES/b.outdir"
	ls -A "$T/cache/layers" >"$RES/b.layers"
	tree_listing "$T/cache/layers/$BASE_KEY" >"$RES/b.base.after"
	cp "$T/build/logs/fill.log" "$RES/b.log" 2>/dev/null
	df -k "$T" | tail -n 1 >"$RES/b.df"
}
t0=$SECONDS
in_tmpfs $((BASE_KB + 32 * 1024))k "$T" -- case_stage
diag "2: $(cat "$RES/b.df" 2>/dev/null); last words: $(tail -n 1 "$RES/b.out" 2>/dev/null)"
if [ "$(cat "$RES/b.rc" 2>/dev/null)" = 1 ] && grep -q "stage 'fill' failed" "$RES/b.out" &&
	says_disk_full "$RES/b.out"; then
	ok "2. a stage on a full disk: exit 1, names the stage and shows 'No space left on device' ($((SECONDS - t0)) s)"
else
	not_ok "2. a stage on a full disk: exit $(cat "$RES/b.rc" 2>/dev/null), wanted 1, the stage named and 'No space left on device'"
	sed 's/^/# /' "$RES/b.out" | tail -n 20
fi
check "2. the stage's own log has the error" says_disk_full "$RES/b.log"
check "2. nothing at the output path" test ! -s "$RES/b.outdir"
check "2. the cache holds the base layer alone (no unfinished layer)" test "$(cat "$RES/b.layers")" = "$BASE_KEY"
check "2. the base layer is unchanged, file by file" diff -u "$RES/b.base.before" "$RES/b.base.after"
check "2. host mount table and files unchanged" host_unchanged "$TMP/host.before"

# ---- 3, 4. the pack fills the disk: the output folder in a 64 MiB tmpfs (the
#            image does not fit), then in one of the image's exact size in
#            pages (the image fits, its .sha256 does not); then with room ----
W=$TMP/cache-warm
new_cache "$W" "$BASE_KEY" "${STAGE_KEYS[@]}"
tree_listing "$W/layers" >"$RES/w.before"
T=$TMP/full-c
EXACT=$(((REF_SIZE + 4095) / 4096 * 4))k
export W EXACT
case_pack() {
	local n
	for n in 3 4; do
		IMGBUILD_CACHE=$W timeout 600 "$IMGBUILD" build "$DEMO" -o "$T/$n/demo.tar" \
			--build-dir "$T/build" >"$RES/$n.out" 2>&1
		echo $? >"$RES/$n.rc"
		ls -A "$T/$n" >"$RES/$n.outdir"
		df -k "$T/$n" | tail -n 1 >"$RES/$n.df"
	done
	IMGBUILD_CACHE=$W timeout 600 "$IMGBUILD" build "$DEMO" -o "$T/room/demo.tar" \
		--build-dir "$T/build" >"$RES/room.out" 2>&1
	echo $? >"$RES/room.rc"
	(cd "$T/room" && sha256sum demo.tar && cat demo.tar.sha256) >"$RES/room.sums" 2>&1
}
t0=$SECONDS
in_tmpfs 64M "$TMP/full-c/3" "$EXACT" "$TMP/full-c/4" $((REF_SIZE / 1024 + 16384))k "$TMP/full-c/room" -- case_pack
for n in 3 4; do
	what="3. the image"
	[ $n = 4 ] && what="4. the image's .sha256"
	diag "$n: $(cat "$RES/$n.df" 2>/dev/null); last words: $(tail -n 1 "$RES/$n.out" 2>/dev/null)"
	if [ "$(cat "$RES/$n.rc" 2>/dev/null)" = 1 ] && says_disk_full "$RES/$n.out"; then
		ok "$what on a full disk: exit 1, says the disk is full"
	else
		not_ok "$what on a full disk: exit $(cat "$RES/$n.rc" 2>/dev/null), wanted 1 and 'No space left on device'"
		sed 's/^/# /' "$RES/$n.out" | tail -n 10
	fi
	check "${what%% *} nothing at the output path" test ! -s "$RES/$n.outdir"
done
check "3, 4. the cache's layers are unchanged, file by file" eval 'tree_listing "$W/layers" | diff -u "$RES/w.before" -'
check "3, 4. no unfinished or incomplete layer in the cache" layers_clean "$W"
if [ "$(cat "$RES/room.rc")" = 0 ] && [ "$(awk 'NR==1 {print $1}' "$RES/room.sums")" = "$REF_DIGEST" ] &&
	[ "$(awk 'NR==2 {print $1}' "$RES/room.sums")" = "$REF_DIGEST" ]; then
	ok "then, with room: packed from the same cache with the undisturbed digest ($((SECONDS - t0)) s for 3, 4 and this)"
else
	not_ok "then, with room: exit $(cat "$RES/room.rc"), sums: $(tr '\n' ' ' <"$RES/room.sums")"
	sed 's/^/# /' "$RES/room.out" | tail -n 10
fi
check "3, 4. host mount table and files unchanged" host_unchanged "$TMP/host.before"
finish
