#!/usr/bin/env bash
# SIGINT and SIGTERM during a demo build (manifests/demo.toml): in the
# bootstrap, in a stage and in the pack; sent to imgbuild alone (kill PID) or
# to its whole process group (what Ctrl-C on a terminal does). Each must end
# imgbuild promptly with 130 (SIGINT) or 143 (SIGTERM) and a message, and then:
#   - no process of its tree alive 5 s later (tests/faults/reaper.py);
#   - the host's mount table, /etc, /dev and a sentinel tree unchanged;
#   - nothing at the output path;
#   - no unfinished layer in the cache: a clean exit removes its own (unlike
#     SIGKILL, which leaves it to the next build's sweep).
# The runs are chained: the rerun after a signal is the run that gets the next
# one, so it resumes past the previous point; the last run finishes and its
# image must have the digest of an undisturbed build.
source "$(dirname "$0")/../lib.sh"
source "$REPO/tests/faults/lib.sh"
faults_require_demo

# The cache must be reachable by apt's _apt user (see faults.sh's control).
chmod 0755 "$TMP"
make_sentinel
host_state "$TMP/host.before"
reference_build
FIRST=${STAGE_NAMES[0]}
pick_compile_stage

OUTDIR=$TMP/out
OUT=$OUTDIR/demo.tar
mkdir -p "$OUTDIR"
# No base and no layer up to the compiling stage: the bootstrap and the
# stages up to that one run again.
C=$TMP/cache
new_cache "$C" "${STAGE_KEYS[@]:$((COMPILE_I + 1))}"
BD=$TMP/build
BLOG=$BD/logs/bootstrap.log

# signal_at N SIG TARGET DESCRIPTION TIMEOUT CONDITION...: starts a run, waits
# for CONDITION, sends SIG to imgbuild (TARGET "pid") or to its process group
# (TARGET "group"), and checks the exit and what it left.
signal_at() {
	local n=$1 sig=$2 target=$3 desc=$4 timeout=$5
	shift 5
	rm -f "$BD"/logs/*.log "$OUTDIR"/* "$OUTDIR"/.[!.]* 2>/dev/null || true
	IMGBUILD_CACHE=$C start_run "$TMP/run-$n" build "$DEMO" -o "$OUT" --build-dir "$BD"
	local what="$n: SIG$sig to the $target, $desc"
	if ! wait_for "$timeout" "$desc" "$@"; then
		not_ok "$what: point not reached: $WAIT_MISS"
		show_run
		kill -KILL "$RUN_PID" 2>/dev/null || true
		wait_run
		return 0
	fi
	# imgbuild is frozen (SIGSTOP) while we note what runs and send the
	# signal, and goes on (SIGCONT) to take it right where the condition held.
	kill -STOP "$RUN_PID" 2>/dev/null || true
	local at t0 running
	at=$(run_elapsed)
	running=$(run_tree | awk '{print $2}' | sort -u | tr '\n' ' ')
	if [ "$target" = group ]; then kill -"$sig" -- -"$RUN_PID"; else kill -"$sig" "$RUN_PID"; fi 2>/dev/null || true
	t0=$(date +%s.%N)
	kill -CONT "$RUN_PID" 2>/dev/null || true
	for _ in $(seq 600); do [ -s "$RUN_DIR/pid" ] && ! kill -0 "$RUN_PID" 2>/dev/null && break; sleep 0.05; done
	local took
	took=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
	wait_run
	local want=130
	[ "$sig" = TERM ] && want=143
	if [ "$RUN_STATUS" = "$want" ] && grep -qiE "interrupt|SIG$sig" "$RUN_DIR/out"; then
		ok "$what: exit $want, ${took} s after the signal (sent at ${at} s)"
	else
		not_ok "$what: exit $RUN_STATUS (wanted $want and a message), ${took} s after the signal"
		show_run
	fi
	diag "$n: imgbuild's children then: ${running:-none}; its last words: $(tail -n 1 "$RUN_DIR/out")"
	check "$n: no process of the build survived" no_survivors
	check "$n: host mount table and files unchanged" host_unchanged "$TMP/host.before"
	check "$n: nothing at the output path" output_empty "$OUTDIR"
	check "$n: no unfinished layer left in the cache" layers_clean "$C"
}

signal_at 1 INT group "bootstrap: apt extracting the essential packages" 180 \
	file_has "$BLOG" 'extracting archives'
signal_at 2 TERM pid "bootstrap: dpkg configuring in the chroot" 240 \
	eval 'file_has "$BLOG" "installing remaining packages" && tree_has "dpkg"'
signal_at 3 TERM pid "stage $FIRST: its sandbox just started" 300 \
	eval 'run_tree | grep -q " imgbuild-init "'
signal_at 4 INT group "stage $COMPILE: ./configure running for 1 s" 300 \
	eval 'tree_has "\./configure" && sleep 1'
signal_at 5 INT pid "pack: the packing process started" 300 file_has "$TMP/run-5/out" 'packing '
# A quarter, not half: the point must hold for several polls (ps and /proc
# take ~0.1 s each), and pack writes the demo image in about half a second.
signal_at 6 TERM group "pack: the image a quarter written" 120 out_tmp_at_least "$OUTDIR" $((REF_SIZE / 4))

rm -f "$BD"/logs/*.log
IMGBUILD_CACHE=$C start_run "$TMP/run-7" build "$DEMO" -o "$OUT" --build-dir "$BD"
wait_run
if [ "$RUN_STATUS" = 0 ]; then ok "rerun finished ($(run_elapsed) s)"; else
	not_ok "rerun failed with $RUN_STATUS"
	show_run 30
fi
check "rerun's image has the undisturbed build's digest" digest_is "$OUT" "$REF_DIGEST"
check "no process of the rerun survived" no_survivors
check "no unfinished or incomplete layer in the cache" layers_clean "$C"
check "host mount table and files unchanged" host_unchanged "$TMP/host.before"
finish
