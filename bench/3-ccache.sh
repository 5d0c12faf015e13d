#!/usr/bin/env bash
# bench/3-ccache.sh — manifests/vision-cpu.toml's torchvision compile ("vision" stage)
# with a cold ccache against a warm one. The first run builds the whole manifest once
# into $BENCH_CACHE/vision (base, toolchain, torch from Debian; untimed unless cached).
# Then each timed run makes only the vision stage run again — an --override file gives
# it one more, harmless env value (IMGBUILD_BENCH_RUN), which changes its cache key —
#   cold: the host ccache folder ($BENCH_CACHE/vision/ccache) emptied first
#   warm: the ccache folder as the previous run left it
# (the check stage after it and the pack run again too; the stage's own time is its
# "stage vision: done in" line). The ccache folder is on the host, one per manifest
# ($IMGBUILD_CACHE/ccache/NAME-ID; this cache builds only the one manifest).
#   warm remote, cold local: a class's shared cache (docs/cluster.md). The bench
#     starts its own redis-server (127.0.0.1, a random port, a password), fills it
#     once from the warm local ccache (untimed: --ccache-remote-write and ccache's
#     reshare, which writes local hits to the remote too), then each run empties the
#     local ccache and builds with the remote read-only, as a classmate would.
#     Skipped without redis-server (REMOTE_RUNS=0 skips it too).
# COLD_RUNS (default 1: a cold compile takes 10-20+ minutes on 2 cores; when the
# ccache folder starts empty, the first build's run of the stage is one), WARM_RUNS
# (default 3), REMOTE_RUNS (default 2). Targets: warm, and warm remote with a cold
# local ccache, at least 5x faster than cold.
# CCACHE_MANIFEST and CCACHE_STAGE bench another manifest's compiling stage (e.g.
# manifests/demo.toml's hello, minutes instead of an hour) in $BENCH_CACHE/ccache-NAME.
set -uo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
COLD_RUNS=${COLD_RUNS:-1}
WARM_RUNS=${WARM_RUNS:-3}
REMOTE_RUNS=${REMOTE_RUNS:-2}
[ "$(id -u)" = 0 ] || bench_skip "needs root (the build sandbox)"
need_commands build
MANIFEST=${CCACHE_MANIFEST:-$BENCH_REPO/manifests/vision-cpu.toml}
[ -f "$MANIFEST" ] || bench_skip "no $MANIFEST yet"
MANIFEST=$(realpath "$MANIFEST")
STAGE=${CCACHE_STAGE:-vision}
if [ -z "${CCACHE_MANIFEST:-}" ]; then
	export IMGBUILD_CACHE=$BENCH_CACHE/vision
else
	export IMGBUILD_CACHE=$BENCH_CACHE/ccache-$(basename "$MANIFEST" .toml)
fi
CCDIR=$IMGBUILD_CACHE/ccache
WORK=$(mktemp -d "$BENCH_TMP/ccache.XXXXXX")
REDIS_PID=
trap '[ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null; rm -rf --one-file-system "$WORK"' EXIT
cd "$WORK" || exit 1

# override RUN-ID [KEY=VALUE...]: the stage's own env (tables under [[stage]] are
# replaced whole) plus IMGBUILD_BENCH_RUN and the KEY=VALUEs.
override() {
	python3 - "$MANIFEST" "$STAGE" "$@" >"$WORK/override.toml" <<'PY'
import json, sys, tomllib
m = tomllib.load(open(sys.argv[1], "rb"))
st = [s for s in m["stage"] if s["name"] == sys.argv[2]][0]
env = dict(st.get("env", {}))
env["IMGBUILD_BENCH_RUN"] = sys.argv[3]
for kv in sys.argv[4:]:
    k, v = kv.split("=", 1)
    env[k] = v
print("[[stage]]")
print(f"name = {json.dumps(sys.argv[2])}")
print("env = { " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in env.items()) + " }")
PY
	# CCACHE_EXTRA_OVERRIDE: more TOML for the same --override file (e.g. a recipe
	# fix not yet in the manifest); it says so in the output.
	if [ -n "${CCACHE_EXTRA_OVERRIDE:-}" ]; then
		cat "$CCACHE_EXTRA_OVERRIDE" >>"$WORK/override.toml"
	fi
}
build() { "$IMGBUILD" build "$MANIFEST" -o "$WORK/vision.tar" --override "$WORK/override.toml" "$@"; }
logged() { grep -oE "$1 [0-9.]+ s" "$BENCH_LOG" | tail -1 | grep -oE '[0-9.]+ s' | cut -d' ' -f1; }
ccstats() {	# "hits/misses" of the manifest's ccache folder(s) (read by the host's ccache)
	local d
	for d in "$CCDIR"/*/; do
		[ -d "$d" ] && CCACHE_DIR=$d ccache --print-stats 2>/dev/null
	done | awk '/^direct_cache_hit|^preprocessed_cache_hit/ {h += $2} /^cache_miss/ {m += $2}
		/^remote_storage_hit/ {r += $2} /^local_storage_hit/ {l += $2}
		END {printf "%d hits (%d local, %d remote), %d misses", h, l, r, m}'
}
cczero() { local d; for d in "$CCDIR"/*/; do [ -d "$d" ] && CCACHE_DIR=$d ccache -z; done; true; }

# Once: the whole manifest (layers before the stage are then cached). When the ccache
# folder starts empty, this build's run of the stage is a cold sample too.
tag=$(date +%s)
override "prep-$tag"
cold_from_prep=0
[ -z "$(ls -A "$CCDIR" 2>/dev/null)" ] && cold_from_prep=1
mkdir -p "$CCDIR"
cczero >/dev/null 2>&1
bench_note "3-ccache: building $MANIFEST once into $IMGBUILD_CACHE (cached layers are reused)"
s=$EPOCHREALTIME
build >>"$BENCH_LOG" 2>&1 </dev/null || bench_die "the first build failed (see $BENCH_LOG)"
prep=$(awk -v s="$s" -v e="$EPOCHREALTIME" 'BEGIN {printf "%.0f", e - s}')
ran=$(grep -oE 'stages run: [^;]*' "$BENCH_LOG" | tail -1)

declare -A ST CC
if [ $cold_from_prep = 1 ] && grep -q "stage $STAGE: done in" "$BENCH_LOG"; then
	ST[cold]=" $(logged "stage $STAGE: done in")"
	CC[cold]="$(ccstats)"
else
	cold_from_prep=0
fi
for ((i = cold_from_prep; i < COLD_RUNS; i++)); do
	override "cold-$tag-$i"
	BENCH_PREP='rm -rf --one-file-system "$CCDIR"; mkdir -p "$CCDIR"' \
		measure cold 1 build || bench_die "cold build failed (see $BENCH_LOG)"
	ST[cold]+=" $(logged "stage $STAGE: done in")"
	CC[cold]="$(ccstats)"
done
for ((i = 0; i < WARM_RUNS; i++)); do
	override "warm-$tag-$i"
	BENCH_PREP='cczero' measure warm 1 build || bench_die "warm build failed (see $BENCH_LOG)"
	ST[warm]+=" $(logged "stage $STAGE: done in")"
	CC[warm]="$(ccstats)"
done
remote_note=""
if [ "$REMOTE_RUNS" -gt 0 ] && command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
	pass=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
	mkdir -p "$WORK/redis"
	for _ in 1 2 3 4 5; do
		port=$(shuf -i 20000-60000 -n 1)
		redis-server --bind 127.0.0.1 --port "$port" --requirepass "$pass" --save '' --appendonly no \
			--dir "$WORK/redis" --logfile "$WORK/redis/log" >/dev/null 2>&1 &
		REDIS_PID=$!
		for _ in $(seq 50); do
			redis-cli -p "$port" -a "$pass" --no-auth-warning ping 2>/dev/null | grep -q PONG && break
			sleep 0.1
		done
		redis-cli -p "$port" -a "$pass" --no-auth-warning ping 2>/dev/null | grep -q PONG && break
		kill "$REDIS_PID" 2>/dev/null
		REDIS_PID=
	done
	[ -n "$REDIS_PID" ] || bench_die "redis-server did not start (see $WORK/redis/log)"
	# In the environment, not on the command line: argv is readable by every user.
	export IMGBUILD_CCACHE_REMOTE="redis://:$pass@127.0.0.1:$port"
	# The teacher's fill: local hits written to redis too (reshare), so no cold compile.
	override "fill-$tag" CCACHE_RESHARE=true
	build --ccache-remote-write >>"$BENCH_LOG" 2>&1 </dev/null ||
		bench_die "the build filling redis failed (see $BENCH_LOG)"
	keys=$(redis-cli -p "$port" -a "$pass" --no-auth-warning dbsize)
	for ((i = 0; i < REMOTE_RUNS; i++)); do
		override "remote-$tag-$i"
		BENCH_PREP='rm -rf --one-file-system "$CCDIR"; mkdir -p "$CCDIR"' \
			measure remote 1 build || bench_die "remote build failed (see $BENCH_LOG)"
		ST[remote]+=" $(logged "stage $STAGE: done in")"
		CC[remote]="$(ccstats)"
	done
	unset IMGBUILD_CCACHE_REMOTE
	# shellcheck disable=SC2086
	M[stage_remote]=$(bench_stats ${ST[remote]})
	remote_note="redis: $keys keys after the fill, $(redis-cli -p "$port" -a "$pass" --no-auth-warning dbsize) after the read-only runs"
	kill "$REDIS_PID" 2>/dev/null
	wait "$REDIS_PID" 2>/dev/null
	REDIS_PID=
fi
# shellcheck disable=SC2086
M[stage_cold]=$(bench_stats ${ST[cold]})
# shellcheck disable=SC2086
M[stage_warm]=$(bench_stats ${ST[warm]})

echo "manifest: ${MANIFEST#"$BENCH_REPO"/}, stage '$STAGE' re-run by an --override env value;"
[ -n "${CCACHE_EXTRA_OVERRIDE:-}" ] && echo "with CCACHE_EXTRA_OVERRIDE merged too: $(tr '\n' ' ' <"$CCACHE_EXTRA_OVERRIDE")"
echo "first build (untimed prep, $prep s): $ran; ccache: $(du -sh "$CCDIR" | cut -f1) in $CCDIR"
echo "cold: $COLD_RUNS run(s), ccache emptied before each$([ $cold_from_prep = 1 ] && echo ' (one: the first build, from an empty ccache)'); warm: $WARM_RUNS run(s)"
table_header s "ccache (last run)"
row "stage $STAGE, cold ccache (its log)" stage_cold "${CC[cold]}"
row "stage $STAGE, warm ccache (its log)" stage_warm "${CC[warm]}"
[ -n "${M[stage_remote]:-}" ] && row "stage $STAGE, warm remote, cold local (its log)" stage_remote "${CC[remote]}"
[ -n "${M[cold]:-}" ] && row "imgbuild build, cold ccache (wall: stage + check + pack)" cold
row "imgbuild build, warm ccache (wall: stage + check + pack)" warm
sp=$(awk -v a="$(med stage_cold)" -v b="$(med stage_warm)" 'BEGIN {printf "%.1f", a / b}')
echo "warm ccache speed-up of the stage: ${sp}x${M[cold]:+ (wall: $(ratio cold warm))}"
verdict "$sp >= 5" "warm at least 5x faster (${sp}x)"
if [ -n "${M[stage_remote]:-}" ]; then
	echo "$remote_note"
	rsp=$(awk -v a="$(med stage_cold)" -v b="$(med stage_remote)" 'BEGIN {printf "%.1f", a / b}')
	verdict "$rsp >= 5" "warm remote, cold local ccache at least 5x faster than cold, measured ${rsp}x"
fi
