#!/usr/bin/env bash
# bench/3-ccache.sh — manifests/vision-cpu.toml's torchvision compile ("vision" stage)
# with a cold ccache against a warm one. The first run builds the whole manifest once
# into $BENCH_CACHE/vision (base, toolchain, torch from Debian; untimed unless cached).
# Then each timed run makes only the vision stage run again — an --override file gives
# it one more, harmless env value (IMGBUILD_BENCH_RUN), which changes its cache key —
#   cold: the host ccache folder ($BENCH_CACHE/vision/ccache) emptied first
#   warm: the ccache folder as the previous run left it
# (the check stage after it and the pack run again too; the stage's own time is its
# "stage vision: done in" line). The ccache folder is on the host, shared by every
# build of one cache; IMGBUILD_CCACHE_REMOTE (ccache's remote_storage syntax) adds a
# shared remote cache for a class building many images.
# COLD_RUNS (default 1: a cold compile takes 10-20+ minutes on 2 cores; when the
# ccache folder starts empty, the first build's run of the stage is one) and WARM_RUNS
# (default 3). Target: warm at least 5x faster than cold.
set -uo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
COLD_RUNS=${COLD_RUNS:-1}
WARM_RUNS=${WARM_RUNS:-3}
[ "$(id -u)" = 0 ] || bench_skip "needs root (the build sandbox)"
need_commands build
MANIFEST=$BENCH_REPO/manifests/vision-cpu.toml
[ -f "$MANIFEST" ] || bench_skip "no $MANIFEST yet"
STAGE=${CCACHE_STAGE:-vision}
export IMGBUILD_CACHE=$BENCH_CACHE/vision
CCDIR=$IMGBUILD_CACHE/ccache
WORK=$(mktemp -d "$BENCH_TMP/ccache.XXXXXX")
trap 'rm -rf --one-file-system "$WORK"' EXIT
cd "$WORK" || exit 1

# override RUN-ID: the stage's own env (tables under [[stage]] are replaced whole)
# plus IMGBUILD_BENCH_RUN.
override() {
	python3 - "$MANIFEST" "$STAGE" "$1" >"$WORK/override.toml" <<'PY'
import json, sys, tomllib
m = tomllib.load(open(sys.argv[1], "rb"))
st = [s for s in m["stage"] if s["name"] == sys.argv[2]][0]
env = dict(st.get("env", {}))
env["IMGBUILD_BENCH_RUN"] = sys.argv[3]
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
build() { "$IMGBUILD" build "$MANIFEST" -o "$WORK/vision.tar" --override "$WORK/override.toml"; }
logged() { grep -oE "$1 [0-9.]+ s" "$BENCH_LOG" | tail -1 | grep -oE '[0-9.]+ s' | cut -d' ' -f1; }
ccstats() {	# "hits/misses" of the host ccache folder (read by the host's ccache)
	CCACHE_DIR=$CCDIR ccache --print-stats 2>/dev/null |
		awk '/^direct_cache_hit|^preprocessed_cache_hit/ {h += $2} /^cache_miss/ {m += $2} END {printf "%d hits, %d misses", h, m}'
}

# Once: the whole manifest (layers before the stage are then cached). When the ccache
# folder starts empty, this build's run of the stage is a cold sample too.
tag=$(date +%s)
override "prep-$tag"
cold_from_prep=0
[ -z "$(ls -A "$CCDIR" 2>/dev/null)" ] && cold_from_prep=1
mkdir -p "$CCDIR"
CCACHE_DIR=$CCDIR ccache -z >/dev/null 2>&1
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
	BENCH_PREP='rm -rf --one-file-system "$CCDIR"; mkdir -p "$CCDIR"; CCACHE_DIR=$CCDIR ccache -z' \
		measure cold 1 build || bench_die "cold build failed (see $BENCH_LOG)"
	ST[cold]+=" $(logged "stage $STAGE: done in")"
	CC[cold]="$(ccstats)"
done
for ((i = 0; i < WARM_RUNS; i++)); do
	override "warm-$tag-$i"
	BENCH_PREP='CCACHE_DIR=$CCDIR ccache -z' measure warm 1 build || bench_die "warm build failed (see $BENCH_LOG)"
	ST[warm]+=" $(logged "stage $STAGE: done in")"
	CC[warm]="$(ccstats)"
done
# shellcheck disable=SC2086
M[stage_cold]=$(bench_stats ${ST[cold]})
# shellcheck disable=SC2086
M[stage_warm]=$(bench_stats ${ST[warm]})

echo "manifest: manifests/vision-cpu.toml, stage '$STAGE' re-run by an --override env value;"
[ -n "${CCACHE_EXTRA_OVERRIDE:-}" ] && echo "with CCACHE_EXTRA_OVERRIDE merged too: $(tr '\n' ' ' <"$CCACHE_EXTRA_OVERRIDE")"
echo "first build (untimed prep, $prep s): $ran; ccache: $(du -sh "$CCDIR" | cut -f1) in $CCDIR"
echo "cold: $COLD_RUNS run(s), ccache emptied before each$([ $cold_from_prep = 1 ] && echo ' (one: the first build, from an empty ccache)'); warm: $WARM_RUNS run(s)"
table_header s "ccache (last run)"
row "stage $STAGE, cold ccache (its log)" stage_cold "${CC[cold]}"
row "stage $STAGE, warm ccache (its log)" stage_warm "${CC[warm]}"
[ -n "${M[cold]:-}" ] && row "imgbuild build, cold ccache (wall: stage + check + pack)" cold
row "imgbuild build, warm ccache (wall: stage + check + pack)" warm
sp=$(awk -v a="$(med stage_cold)" -v b="$(med stage_warm)" 'BEGIN {printf "%.1f", a / b}')
echo "warm ccache speed-up of the stage: ${sp}x${M[cold]:+ (wall: $(ratio cold warm))}"
verdict "$sp >= 5" "warm at least 5x faster (${sp}x)"
