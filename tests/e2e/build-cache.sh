#!/usr/bin/env bash
# The stage cache on a real bookworm base (shared test cache): an unchanged
# manifest runs no stage, an edited last stage re-runs alone, retries run the
# clean command, a failing stage leaves the earlier ones cached and the next
# run resumes at it, Ctrl-C stops a stage and exits 130, and a second bootstrap
# of the same suite downloads no package.
source "$(dirname "$0")/../lib.sh"
require_root

use_debian_test_cache
NONCE="$(date +%s%N)-$$"
P=$TMP/p
B=$TMP/build
OUT=$TMP/cache.tar
mkdir -p "$P/stages"

stage_script() {	# NAME TEXT
	printf 'set -eu\n%s\n' "$2" >"$P/stages/$1.sh"
}
# manifest FILE EPOCH STAGE...: each STAGE is "NAME" or "NAME:key = value|key = value".
manifest() {
	local file=$1 epoch=$2
	shift 2
	{
		printf '[image]\nname = "test-cache"\nsource_date_epoch = %s\n\n' "$epoch"
		printf '[base]\ndistro = "debian"\nsuite = "bookworm"\n\n'
		printf '[env]\nTEST_NONCE = "%s"\n' "$NONCE"
		local s name extra kv
		for s in "$@"; do
			name=${s%%:*}
			printf '\n[[stage]]\nname = "%s"\nscript = "stages/%s.sh"\n' "$name" "$name"
			if [ "$s" != "$name" ]; then
				extra=${s#*:}
				IFS='|' read -ra kvs <<<"$extra"
				for kv in "${kvs[@]}"; do printf '%s\n' "$kv"; done
			fi
		done
	} >"$file"
}
build() {	# OUTFILE MANIFEST: runs a build, output to OUTFILE; returns its status
	local out=$1
	shift
	local rc=0
	"$IMGBUILD" build "$@" -o "$OUT" --build-dir "$B" >"$out" 2>&1 || rc=$?
	sed 's/^/#   /' "$out" | tail -n 12
	return $rc
}
cd "$TMP"
ls "$IMGBUILD_CACHE/layers" >"$TMP/layers-before" 2>/dev/null || : >"$TMP/layers-before"

stage_script one 'echo one > /etc/one'
stage_script two 'echo two > /etc/two; rm -f /etc/debian_version'
stage_script three 'echo three > /etc/three; cat /etc/one /etc/two'
manifest "$P/a.toml" 1700000000 one two three
check "first build runs every stage" build "$TMP/b1.out" "$P/a.toml"
check "first build: all three ran" grep -q 'stages run: one, two, three' "$TMP/b1.out"
BASE_KEY=$(tar -xOf "$OUT" ./.imgbuild/facts.toml 2>/dev/null | sed -n 's/^base_key = "\(.*\)"$/\1/p')

check "unchanged manifest: the build succeeds" build "$TMP/b2.out" "$P/a.toml"
check "unchanged manifest: no stage runs" grep -q 'stages run: none; cached: one, two, three' "$TMP/b2.out"
check "unchanged manifest: no packing" sh -c "! grep -q '^imgbuild: packing' '$TMP/b2.out'"
diag "$(grep 'no-change rebuild' "$TMP/b2.out" || echo 'no timing line')"

stage_script three 'echo three-edited > /etc/three; cat /etc/one /etc/two'
check "edited last stage: the build succeeds" build "$TMP/b3.out" "$P/a.toml"
check "edited last stage: only it runs" grep -q 'stages run: three; cached: one, two' "$TMP/b3.out"
layers_ok() {
	mkdir -p "$TMP/x3" && tar -C "$TMP/x3" -xf "$OUT" ./etc 2>/dev/null
	[ "$(cat "$TMP/x3/etc/three")" = three-edited ] && [ -f "$TMP/x3/etc/one" ] && [ ! -e "$TMP/x3/etc/debian_version" ]
}
check "the stacked layers: files from each stage, a deletion (whiteout) honoured" layers_ok

# retries=1: the first attempt fails and leaves a marker in the work folder;
# the clean command runs before the retry, which then succeeds.
stage_script flaky 'if [ ! -e /imgbuild/work/marker ]; then touch /imgbuild/work/marker; echo FIRST_ATTEMPT_FAILS; exit 1; fi
test -e /imgbuild/work/cleaned
echo SECOND_ATTEMPT_OK'
manifest "$P/r.toml" 1700000000 one "flaky:retries = 1|clean = \"echo CLEAN_RAN; touch /imgbuild/work/cleaned\""
check "retries=1: a stage failing once succeeds" build "$TMP/r.out" "$P/r.toml"
check "retries=1: clean ran between the attempts, same work folder" \
	sh -c "grep -q FIRST_ATTEMPT_FAILS '$B/logs/flaky.log' && grep -q CLEAN_RAN '$B/logs/flaky.log' && grep -q SECOND_ATTEMPT_OK '$B/logs/flaky.log'"

# retries=0: a failure exits 1, shows the log's tail, keeps the earlier stages.
stage_script bad 'for i in $(seq 1 30); do echo "bad line $i"; done; exit 3'
manifest "$P/f.toml" 1700000000 one two bad
rc=0
build "$TMP/f1.out" "$P/f.toml" || rc=$?
check "a failing stage exits 1 (got $rc)" test "$rc" -eq 1
check "the failure names the stage and its status" grep -q "stage 'bad' failed with exit status 3" "$TMP/f1.out"
check "the last 20 lines of the log are shown" sh -c "grep -q 'bad line 30' '$TMP/f1.out' && grep -q 'bad line 11' '$TMP/f1.out' && ! grep -q 'bad line 10\$' '$TMP/f1.out'"
rc=0
build "$TMP/f2.out" "$P/f.toml" || rc=$?
check "the next run resumes at the failed stage (earlier ones cached)" \
	sh -c "[ $rc -eq 1 ] && grep -q 'stage bad: running' '$TMP/f2.out' && ! grep -q 'stage one: running' '$TMP/f2.out' && ! grep -q 'stage two: running' '$TMP/f2.out'"
stage_script bad 'echo fixed'
build "$TMP/f3.out" "$P/f.toml" || true
check "fixed stage: only it runs" grep -q 'stages run: bad; cached: one, two' "$TMP/f3.out"
# --override: entries matched by name (given keys replace), new ones appended.
stage_script four 'test "$(cat /etc/three)" = three-edited; test "$OVERRIDDEN" = yes; echo four > /etc/four'
cat >"$P/o.toml" <<'EOF'
[image]
name = "test-cache"

[[stage]]
name = "two"
env = { OVERRIDDEN = "yes" }

[[stage]]
name = "four"
script = "stages/four.sh"
env = { OVERRIDDEN = "yes" }
EOF
check "--override: the merged manifest builds" build "$TMP/o.out" "$P/a.toml" --override "$P/o.toml"
check "--override: the changed stage and those after it run, the new one is added" \
	grep -q 'stages run: two, three, four; cached: one' "$TMP/o.out"
printf '[image]\nnmae = "x"\n' >"$P/bad-override.toml"
check_fails "--override: an unknown key is still refused" 2 'nmae' \
	"$IMGBUILD" build "$P/a.toml" --override "$P/bad-override.toml" -o "$OUT" --build-dir "$B"
# Unfinished layers are named KEY.tmp-PID; one whose PID still lives belongs to
# another build sharing this cache, not to a build of this test.
dead_tmp_layers() {
	ls "$IMGBUILD_CACHE/layers" | sed -n 's/.*\.tmp-\([0-9][0-9]*\)$/\1/p' | while read -r p; do
		kill -0 "$p" 2>/dev/null || echo "$p"
	done
}
check "no unfinished layer is left behind" test -z "$(dead_tmp_layers)"

# Ctrl-C (SIGINT) while a stage runs: the stage stops, the build exits 130,
# nothing is left mounted or half-made.
stage_script slow 'echo SLOW_STARTED; sleep 60; echo SLOW_DONE'
manifest "$P/s.toml" 1700000000 one slow
"$IMGBUILD" build "$P/s.toml" -o "$OUT" --build-dir "$B" >"$TMP/s.out" 2>&1 &
pid=$!
for _ in $(seq 300); do grep -q SLOW_STARTED "$B/logs/slow.log" 2>/dev/null && break; sleep 0.1; done
kill -INT $pid
rc=0
wait $pid || rc=$?
check "SIGINT stops the build with exit 130 (got $rc)" test "$rc" -eq 130
check "... by stopping the stage, not by waiting for it (no SLOW_DONE in its log)" \
	bash -c "grep -q SLOW_STARTED '$B/logs/slow.log' && ! grep -q SLOW_DONE '$B/logs/slow.log'"
check "the interrupted stage left no layer" test -z "$(dead_tmp_layers)"
"$IMGBUILD" build "$P/s.toml" -o "$OUT" --build-dir "$B" >"$TMP/s2.out" 2>&1 &
pid=$!
for _ in $(seq 300); do grep -q SLOW_STARTED "$B/logs/slow.log" 2>/dev/null && break; sleep 0.1; done
kill -TERM $pid
rc=0
wait $pid || rc=$?
check "SIGTERM stops the build with exit 143 (got $rc)" test "$rc" -eq 143

# A second bootstrap of the suite (another epoch: another base key) takes
# every package from the cache.
manifest "$P/e.toml" 1600000000 one
check "a second bootstrap of bookworm builds" build "$TMP/e.out" "$P/e.toml"
check "the second bootstrap downloaded no package" grep -qE 'bootstrap: [0-9]+ packages, 0 downloaded' "$TMP/e.out"
check "the per-suite index of cached packages exists" test -s "$IMGBUILD_CACHE/debs/debian-bookworm.index"

# Drop what this run made in the shared cache (stage layers, keyed by the
# nonce, and the extra base); the bookworm base that other tests use stays.
for d in "$IMGBUILD_CACHE"/layers/*; do
	k=$(basename "$d")
	grep -qx "$k" "$TMP/layers-before" && continue
	[ "$k" = "$BASE_KEY" ] && continue
	rm -rf --one-file-system "$d"
done
# And its ccache: one per manifest path, and this run's manifests are gone.
rm -rf --one-file-system "$IMGBUILD_CACHE"/ccache/test-cache-*
finish
