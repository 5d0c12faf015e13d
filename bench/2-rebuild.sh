#!/usr/bin/env bash
# bench/2-rebuild.sh — rebuilds of manifests/demo.toml from the stage cache.
#   full build:     once, into $BENCH_CACHE/demo with its stage cache (layers, packs)
#                   emptied first and its download/.deb cache kept: every stage runs,
#                   as the plain tools (mmdebstrap, then each script) would have to
#   no change:      `imgbuild build` again, nothing changed (RUNS, default 5)
#   last stage:     only the last stage changed — an --override gives it one more,
#                   harmless env value — so only it and the pack may run (RUNS)
# The full build is the reference: what rebuilding costs without a stage cache
# (bench/1-bootstrap.sh compares its base with mmdebstrap alone). Prints which stages ran (imgbuild's
# "stages run: ...; cached: ..." line). Target: no-change rebuild under 1 s.
set -uo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
RUNS=${RUNS:-5}
[ "$(id -u)" = 0 ] || bench_skip "needs root (the build sandbox)"
need_commands build
MANIFEST=$BENCH_REPO/manifests/demo.toml
[ -f "$MANIFEST" ] || bench_skip "no $MANIFEST yet"
export IMGBUILD_CACHE=$BENCH_CACHE/demo
WORK=$(mktemp -d "$BENCH_TMP/rebuild.XXXXXX")
trap 'rm -rf --one-file-system "$WORK"' EXIT
cd "$WORK" || exit 1
LAST=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["stage"][-1]["name"])' "$MANIFEST")

override() {	# RUN-ID: the last stage's own env plus IMGBUILD_BENCH_RUN
	python3 - "$MANIFEST" "$LAST" "$1" >"$WORK/override.toml" <<'PY'
import json, sys, tomllib
m = tomllib.load(open(sys.argv[1], "rb"))
st = [s for s in m["stage"] if s["name"] == sys.argv[2]][0]
env = dict(st.get("env", {}))
env["IMGBUILD_BENCH_RUN"] = sys.argv[3]
print("[[stage]]")
print(f"name = {json.dumps(sys.argv[2])}")
print("env = { " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in env.items()) + " }")
PY
}
build() { "$IMGBUILD" build "$MANIFEST" -o "$WORK/demo.tar" "$@"; }
ran_line() { grep -oE 'stages run: .*' "$BENCH_LOG" | tail -1; }

BENCH_PREP='rm -rf --one-file-system "$IMGBUILD_CACHE/layers" "$IMGBUILD_CACHE/packs"' measure first 1 build || bench_die "full build failed (see $BENCH_LOG)"
first_ran=$(ran_line)
measure nochange "$RUNS" build || bench_die "rebuild failed (see $BENCH_LOG)"
nochange_ran=$(ran_line)
unchanged=$(grep -c ', unchanged)' "$BENCH_LOG")
tag=$(date +%s)
for ((i = 0; i < RUNS; i++)); do
	override "$tag-$i"
	measure last 1 build --override "$WORK/override.toml" || bench_die "last-stage rebuild failed (see $BENCH_LOG)"
done
last_ran=$(ran_line)
packed=$(grep -oE 'packed in [0-9.]+ s' "$BENCH_LOG" | tail -1)

echo "manifest: manifests/demo.toml (stages: $(python3 -c 'import sys, tomllib; print(", ".join(s["name"] for s in tomllib.load(open(sys.argv[1], "rb"))["stage"]))' "$MANIFEST")); cache $IMGBUILD_CACHE"
echo "full build:        $first_ran"
echo "no-change rebuild: $nochange_ran ($unchanged of $RUNS said the image is unchanged)"
echo "last stage changed ($LAST): $last_ran; $packed"
table_header s "time ratio vs full build"
row "full build (no stage cache; .deb/download cache kept)" first
row "no-change rebuild" nochange "$(ratio nochange first) ($(speedup nochange first))"
row "last stage ($LAST) changed: it + pack" last "$(ratio last first) ($(speedup last first))"
nc=$(med nochange)
verdict "$nc < 1" "no-change rebuild < 1 s ($(awk -v x="$nc" 'BEGIN {printf "%.3f", x}') s)"
only=$(awk -v l="$last_ran" -v s="$LAST" 'BEGIN {split(l, a, ";"); sub(/^stages run: /, "", a[1]); print (a[1] == s) ? 1 : 0}')
verdict "$only == 1" "last-stage change runs only '$LAST' and the pack (ran: $(echo "$last_ran" | cut -d';' -f1 | sed 's/stages run: //'))"
