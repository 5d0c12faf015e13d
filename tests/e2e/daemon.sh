#!/usr/bin/env bash
# Daemons that try to outlive what started them: double-forked, setsid, deaf to
# SIGHUP/SIGTERM/SIGINT, one with its standard streams closed and one still
# holding the stage's output pipe. The sandbox's PID namespace must take them
# all down when the command (or stage) ends, and with imgbuild when it is
# SIGKILLed; nothing of them may run, write or hold a mount afterwards.
#   1. imgbuild run DIR -- (a command that leaves daemons behind)
#   2. imgbuild build: a stage whose script leaves daemons behind
#   3. SIGKILL of imgbuild while that stage (and its daemons) run
source "$(dirname "$0")/../lib.sh"
source "$REPO/tests/faults/lib.sh"
faults_require_demo

export IMGBUILD_CACHE=$SHARED_CACHE
make_sentinel
host_state "$TMP/host.before"
MARK="imgbuild-daemon-test-$$-$RANDOM"

# The daemon starter, used both by `run` and by the stage. $1: the folder the
# heartbeats go to (a host folder bound in). The marker is in every daemon's
# command line, so pgrep -f finds any that survived, wherever it is.
cat >"$TMP/start-daemons.sh" <<EOF
#!/bin/sh
hb=\$1
# A: setsid, double fork, streams closed, deaf to HUP/TERM/INT.
( setsid sh -c 'trap "" HUP TERM INT; while :; do echo a >>"\$0/heartbeat-a"; echo a >>/var/tmp/heartbeat-a; sleep 0.1; done # $MARK' "\$hb" </dev/null >/dev/null 2>&1 & ) &
# B: nohup, still holding stdout/stderr (the stage's output pipe).
( nohup sh -c 'trap "" HUP TERM INT; while :; do echo b >>"\$0/heartbeat-b"; echo "daemon b alive"; sleep 0.1; done # $MARK' "\$hb" </dev/null & ) &
sleep 0.5
[ -s "\$hb/heartbeat-a" ] && [ -s "\$hb/heartbeat-b" ] && echo "DAEMONS_STARTED"
EOF
chmod +x "$TMP/start-daemons.sh"

# not_growing FILE...: none of FILES grows over 1 s (the daemons beat every 0.1 s).
not_growing() {
	local before after
	before=$(stat -c %s "$@" 2>/dev/null | tr '\n' ' ')
	sleep 1
	after=$(stat -c %s "$@" 2>/dev/null | tr '\n' ' ')
	if [ "$before" != "$after" ]; then
		echo "still growing: $* ($before -> $after)"
		return 1
	fi
}
no_marked_process() {
	if pgrep -af -- "$MARK" | grep -v pgrep; then
		return 1
	fi
	return 0
}

# ---- the demo's base (bootstrapped once per shared cache) ----
P=$TMP/proj
demo_project "$P"
# The stage script carries the starter inline: stage scripts are single files.
{
	echo '#!/bin/sh'
	echo 'set -eu'
	echo 'cat >/tmp/start-daemons.sh <<'"'"'START'"'"
	cat "$TMP/start-daemons.sh"
	echo 'START'
	echo 'sh /tmp/start-daemons.sh /imgbuild/work'
	echo 'echo "stage ends now; ${STAGE_SLEEP:-0} s first"'
	echo 'sleep "${STAGE_SLEEP:-0}"'
} >"$P/stages/daemon.sh"
NONCE="$(date +%s%N)-$$"
{
	demo_head daemon-test
	printf '[env]\nTEST_NONCE = "%s"\n\n' "$NONCE"
	printf '[[stage]]\nname = "daemon"\nscript = "../stages/daemon.sh"\n\n'
	printf '[[stage]]\nname = "after"\nscript = "../stages/after.sh"\n'
} >"$P/manifests/daemon.toml"
# The next stage sees the daemon stage's layer: any daemon still writing
# there would show as a growing heartbeat.
cat >"$P/stages/after.sh" <<'EOF'
#!/bin/sh
a=$(wc -c </var/tmp/heartbeat-a)
sleep 1
b=$(wc -c </var/tmp/heartbeat-a)
echo "heartbeat-a in the layer below: $a -> $b bytes"
[ "$a" = "$b" ] && echo AFTER_STAGE_QUIET
EOF

BD=$TMP/build
OUT=$TMP/out/daemon.tar
mkdir -p "$TMP/out"
t0=$SECONDS
start_run "$TMP/run-build" build "$P/manifests/daemon.toml" -o "$OUT" --build-dir "$BD"
# A hang (the daemon holding the output pipe) ends the test, not CI.
for _ in $(seq 6000); do run_ended && break; sleep 0.1; done
run_ended || kill -KILL "$RUN_PID"
wait_run
if [ "$RUN_STATUS" = 0 ]; then
	ok "build with a daemon-leaving stage finished ($((SECONDS - t0)) s, base included)"
else
	not_ok "build with a daemon-leaving stage: exit $RUN_STATUS"
	show_run 30
	finish
fi
check "the stage's daemons were running when it ended" grep -q DAEMONS_STARTED "$BD/logs/daemon.log"
check "no daemon survived the build (subreaper and pgrep)" eval 'no_survivors && no_marked_process'
check "the daemons' heartbeats in the work folder stopped" not_growing "$BD/work/daemon/heartbeat-a" "$BD/work/daemon/heartbeat-b"
check "the next stage saw the layer below stay quiet" grep -q AFTER_STAGE_QUIET "$BD/logs/after.log"
image_keys "$OUT"
LAYER=$SHARED_CACHE/layers/${STAGE_KEYS[0]}
check "the committed layer stays unchanged (heartbeat-a)" not_growing "$LAYER/upper/var/tmp/heartbeat-a"
check "host mount table and files unchanged after the build" host_unchanged "$TMP/host.before"

# ---- imgbuild run DIR -- a command that leaves daemons behind ----
ROOT=$SHARED_CACHE/layers/$BASE_KEY/upper
mkdir -p "$TMP/cwd"
cp "$TMP/start-daemons.sh" "$TMP/cwd/start-daemons.sh"
cd "$TMP/cwd" || exit 1
start_run "$TMP/run-run" run --cwd-rw "$ROOT" -- sh /imgbuild/cwd/start-daemons.sh /imgbuild/cwd
cd "$REPO" || exit 1
for _ in $(seq 600); do run_ended && break; sleep 0.1; done
run_ended || kill -KILL "$RUN_PID"
wait_run
if [ "$RUN_STATUS" = 0 ] && grep -q DAEMONS_STARTED "$RUN_DIR/out"; then
	ok "imgbuild run: the command started its daemons and exited 0"
else
	not_ok "imgbuild run: status $RUN_STATUS"
	show_run
fi
check "imgbuild run: no daemon survived (subreaper and pgrep)" eval 'no_survivors && no_marked_process'
check "imgbuild run: the daemons' heartbeats stopped" not_growing "$TMP/cwd/heartbeat-a" "$TMP/cwd/heartbeat-b"
check "imgbuild run: host mount table and files unchanged" host_unchanged "$TMP/host.before"

# ---- SIGKILL of imgbuild while the stage and its daemons run ----
sed -i 's/^TEST_NONCE = .*/TEST_NONCE = "'"$NONCE"'-kill"/' "$P/manifests/daemon.toml"
sed -i 's/^name = "daemon"$/name = "daemon"\nenv = { STAGE_SLEEP = "60" }/' "$P/manifests/daemon.toml"
BD=$TMP/build-kill
start_run "$TMP/run-kill" build "$P/manifests/daemon.toml" -o "$OUT.kill" --build-dir "$BD"
if wait_for 120 "the daemons running" file_has "$BD/logs/daemon.log" 'stage ends now'; then
	kill -KILL "$RUN_PID"
	wait_run
	check "SIGKILL in the stage: imgbuild died of it" test "$RUN_STATUS" = 137
	check "SIGKILL in the stage: no stage process or daemon survived" eval 'no_survivors && no_marked_process'
	check "SIGKILL in the stage: the heartbeats stopped" not_growing "$BD/work/daemon/heartbeat-a" "$BD/work/daemon/heartbeat-b"
	check "SIGKILL in the stage: host mount table and files unchanged" host_unchanged "$TMP/host.before"
else
	not_ok "SIGKILL in the stage: $WAIT_MISS"
	show_run
	kill -KILL "$RUN_PID" 2>/dev/null || true
	wait_run
fi

# Drop this test's stage layers from the shared cache; the base stays.
for k in "${STAGE_KEYS[@]}"; do rm -rf --one-file-system "${SHARED_CACHE:?}/layers/$k"; done
rm -rf --one-file-system "$SHARED_CACHE"/layers/*.tmp-"$RUN_PID" 2>/dev/null || true
finish
