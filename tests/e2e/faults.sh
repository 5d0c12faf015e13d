#!/usr/bin/env bash
# SIGKILL of imgbuild at 10 points of the demo build (manifests/demo.toml):
# four in the bootstrap, four in and between the stages, two in the pack.
# Each point is found by watching the build (its process tree, its logs, its
# layer folders, the files it holds open), never by a fixed sleep alone.
#
# After every kill:
#   - imgbuild died of the SIGKILL (the point was reached before the end);
#   - no process of its tree is alive 5 s later (tests/faults/reaper.py is the
#     child subreaper of the build: orphans come to it, not to PID 1);
#   - /proc/self/mountinfo, /etc, /dev, a sentinel tree bound nowhere and the
#     repository's stages/ and manifests/ are exactly as before the test;
#   - the output folder holds no half-written image (nothing, or a complete
#     image that matches its .sha256).
# The rerun after a kill resumes from what the kill left. Points of one phase
# are chained to keep the test short: the rerun after kill k is the run killed
# at point k+1, so it must get past point k first; the last run of a chain, and
# the rerun after each pack kill, finishes, and its image must have the digest
# of an undisturbed build, with no unfinished layer left in the cache.
# A control at the end bootstraps the same base, undisturbed, in a cache under
# a 0700 folder: the image must not depend on where the cache lies.
source "$(dirname "$0")/../lib.sh"
source "$REPO/tests/faults/lib.sh"
faults_require_demo

# apt in the bootstrap drops to the _apt user, and a cache it cannot reach
# (under mktemp's 0700 folder) changes the base (the control at the end): the
# caches of the kills live where _apt can go, as the shared cache does.
chmod 0755 "$TMP"
make_sentinel
host_state "$TMP/host.before"
reference_build
N_STAGES=${#STAGE_NAMES[@]}
[ "$N_STAGES" -ge 1 ] || { not_ok "the demo has no stage"; finish; }
FIRST=${STAGE_NAMES[0]}
pick_compile_stage

OUTDIR=$TMP/out
OUT=$OUTDIR/demo.tar
mkdir -p "$OUTDIR"
KILLS=0

# fault N DESCRIPTION TIMEOUT CONDITION...: waits in the running build for
# CONDITION, SIGKILLs imgbuild at once, and makes the checks after a fault.
fault() {
	local n=$1 desc=$2 timeout=$3
	shift 3
	if ! wait_for "$timeout" "$desc" "$@"; then
		not_ok "kill $n ($desc): point not reached: $WAIT_MISS"
		show_run
		kill -KILL "$RUN_PID" 2>/dev/null || true
		wait_run
		return 0
	fi
	# Frozen first (SIGSTOP), so that the kill lands exactly where the
	# condition was seen while we note what was running.
	kill -STOP "$RUN_PID" 2>/dev/null || true
	local at running
	at=$(run_elapsed)
	running=$(run_tree | awk '{print $2}' | sort -u | tr '\n' ' ')
	kill -KILL "$RUN_PID" 2>/dev/null || true
	wait_run
	if [ "$RUN_STATUS" = 137 ]; then
		KILLS=$((KILLS + 1))
		ok "kill $n ($desc): SIGKILL at ${at} s"
	else
		not_ok "kill $n ($desc): imgbuild ended with $RUN_STATUS, not by the SIGKILL"
		show_run
	fi
	diag "kill $n: imgbuild's children then: ${running:-none}"
	check "kill $n: no process of the build survived" no_survivors
	check "kill $n: host mount table and files unchanged" host_unchanged "$TMP/host.before"
	check "kill $n: no half-written image at the output path" output_whole "$OUTDIR" demo.tar
}

# finish_chain WHAT CACHE: the run now going finishes with the undisturbed
# digest and leaves a clean cache and host.
finish_chain() {
	local what=$1 cache=$2
	wait_run
	if [ "$RUN_STATUS" = 0 ]; then
		ok "$what: rerun finished ($(run_elapsed) s)"
	else
		not_ok "$what: rerun failed with $RUN_STATUS"
		show_run 30
	fi
	check "$what: rerun's image has the undisturbed build's digest" digest_is "$OUT" "$REF_DIGEST"
	[ -f "$OUT" ] && [ "$(sha256sum "$OUT" | cut -d' ' -f1)" != "$REF_DIGEST" ] && listing_diff "$TMP/ref/demo.tar" "$OUT"
	check "$what: no process of the rerun survived" no_survivors
	check "$what: no unfinished or incomplete layer in the cache" layers_clean "$cache"
	check "$what: host mount table and files unchanged" host_unchanged "$TMP/host.before"
}

clear_out() { rm -f "$OUTDIR"/* "$OUTDIR"/.[!.]* 2>/dev/null || true; }

# ---- 1-4: the bootstrap, in a cache without the base ----
# The stage layers and the downloaded .debs come from the shared cache: the
# base is bootstrapped again (offline of nothing but apt's lists), the stages
# are found cached on top of it by key, and the digest shows the rebuilt base
# is the same, byte for byte.
COLD=$TMP/cache-cold
new_cache "$COLD" "${STAGE_KEYS[@]}"
BD=$TMP/build-cold
BLOG=$BD/logs/bootstrap.log
cold_run() {
	rm -f "$BD"/logs/*.log
	clear_out
	IMGBUILD_CACHE=$COLD start_run "$TMP/run-$1" build "$DEMO" -o "$OUT" --build-dir "$BD"
}
cold_run 1
fault 1 "bootstrap: mmdebstrap started" 60 tree_has ' mmdebstrap '
cold_run 2
fault 2 "bootstrap: apt extracting the essential packages" 180 file_has "$BLOG" 'extracting archives'
cold_run 3
fault 3 "bootstrap: dpkg configuring in the chroot, /proc /sys /dev mounted there" 240 \
	eval 'file_has "$BLOG" "installing remaining packages" && tree_has "dpkg"'
cold_run 4
fault 4 "bootstrap: mmdebstrap's customize hooks (the engine's) running" 300 file_has "$BLOG" 'running --customize-hook'
cold_run 5
finish_chain "kills 1-4" "$COLD"

# ---- 5-8: the stages, in a cache with the base only ----
WARM=$TMP/cache-warm
new_cache "$WARM" "$BASE_KEY"
BD=$TMP/build-warm
warm_run() {
	rm -f "$BD"/logs/*.log
	clear_out
	IMGBUILD_CACHE=$WARM start_run "$TMP/run-$1" build "$DEMO" -o "$OUT" --build-dir "$BD"
}
warm_run 5
fault 5 "stage $FIRST: its sandbox just started" 60 eval 'run_tree | grep -q " imgbuild-init "'
warm_run 6
fault 6 "stage $COMPILE: ./configure running" 300 tree_has '\./configure'
warm_run 7
fault 7 "stage $COMPILE: make compiling (make and cc1 running)" 300 eval 'tree_has " make " && tree_has " cc1 "'
warm_run 8
fault 8 "between stages: $COMPILE's layer just committed" 300 path_exists "$WARM/layers/${STAGE_KEYS[$COMPILE_I]}/done"
warm_run 9
finish_chain "kills 5-8" "$WARM"

# ---- 9-10: the pack; each rerun only packs ----
warm_run 10
fault 9 "pack: the packing process started" 60 file_has "$RUN_DIR/out" 'packing '
warm_run 11
finish_chain "kill 9" "$WARM"
warm_run 12
# A quarter, not half: the point must hold for several polls (~0.1 s each),
# and pack writes the demo image in about half a second.
fault 10 "pack: the image a quarter written (its unnamed temporary >= 25%)" 120 \
	out_tmp_at_least "$OUTDIR" $((REF_SIZE / 4))
warm_run 13
finish_chain "kill 10" "$WARM"

diag "SIGKILLs delivered: $KILLS of 10"

# ---- control: the base from a cache under a folder only root may enter ----
# (The caches above are reachable by _apt, like the shared cache.) The same
# base, undisturbed, must pack to the same image wherever the cache lies.
P=$TMP/proj
demo_project "$P"
demo_head base-only >"$P/manifests/base.toml"
mkdir -m 0700 "$TMP/private"
new_cache "$TMP/private/cache"
mkdir -p "$TMP/base-shared" "$TMP/base-private"
IMGBUILD_CACHE=$SHARED_CACHE run_to_end "$TMP/run-base-shared" build "$P/manifests/base.toml" \
	-o "$TMP/base-shared/base.tar" --build-dir "$TMP/build-base-shared" || show_run
IMGBUILD_CACHE=$TMP/private/cache run_to_end "$TMP/run-base-private" build "$P/manifests/base.toml" \
	-o "$TMP/base-private/base.tar" --build-dir "$TMP/build-base-private" || show_run
if [ -f "$TMP/base-shared/base.tar" ] && [ -f "$TMP/base-private/base.tar" ] &&
	cmp -s "$TMP/base-shared/base.tar.sha256" "$TMP/base-private/base.tar.sha256"; then
	ok "control: the base bootstrapped in a cache under a 0700 folder packs to the same image"
else
	not_ok "control: the base bootstrapped in a cache under a 0700 folder packs to a different image"
	[ -f "$TMP/base-private/base.tar" ] && listing_diff "$TMP/base-shared/base.tar" "$TMP/base-private/base.tar"
	grep -m1 'unsandboxed' "$TMP/build-base-private/logs/bootstrap.log" | sed 's/^/#   /' || true
fi
finish
