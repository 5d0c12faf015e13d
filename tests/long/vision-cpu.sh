#!/usr/bin/env bash
# manifests/vision-cpu.toml for real (make test-long; not in CI): Debian trixie,
# python3-torch 2.6 from the archive, torchvision 0.21.0 compiled from the
# Debian pool's pinned tarball by stages/python-project.sh, and the check stage's
# torchvision.ops.nms. The vision stage runs twice: first with a ccache folder
# of its own that is empty (cold), then, changed harmlessly through --override
# so that it runs again, with that folder filled (warm): the second must hit
# ccache and be faster. Both times go out as TAP diagnostics.
# Shared test cache: the base, toolchain and torch layers are reused between
# runs; this run's vision and check layers and its ccache folder are removed.
source "$(dirname "$0")/../lib.sh"
require_root

use_debian_test_cache
MANIFEST=$REPO/manifests/vision-cpu.toml
NONCE="$(date +%s)-$$"
# A ccache folder inside the one the engine binds at /imgbuild/ccache: empty
# for this run's first build, whatever other builds left in the shared one.
CCDIR=long-vision-$NONCE
OUT=$TMP/vision-cpu.tar
cd "$TMP" || exit 1

# override FILE RUN: the vision stage with this run's ccache folder; RUN only
# changes the stage's key, so that the stage runs again. An override's [[stage]]
# keys replace the manifest's (env is not merged), so the stage's env is
# re-stated from the manifest with the two keys added.
override() {
	python3 - "$MANIFEST" "$1" "/imgbuild/ccache/$CCDIR" "$2" <<'PY'
import json, sys, tomllib
manifest, out, ccdir, run = sys.argv[1:]
stage = [s for s in tomllib.load(open(manifest, "rb"))["stage"] if s["name"] == "vision"][0]
env = dict(stage.get("env", {}), CCACHE_DIR=ccdir, LONG_TEST_RUN=run)
with open(out, "w") as f:
    f.write('[[stage]]\nname = "vision"\nenv = { %s }\n'
            % ", ".join("%s = %s" % (k, json.dumps(v)) for k, v in env.items()))
PY
}
# build N: build with override N; output in $TMP/buildN.out, wall time in $TMP/buildN.time.
build() {
	local s rc=0
	s=$SECONDS
	"$IMGBUILD" build "$MANIFEST" --override "$TMP/override$1.toml" -o "$OUT" --build-dir "$TMP/bd" \
		>"$TMP/build$1.out" 2>&1 || rc=$?
	echo $((SECONDS - s)) >"$TMP/build$1.time"
	cp "$TMP/bd/logs/vision.log" "$TMP/vision$1.log" 2>/dev/null || true
	return $rc
}
stage_time() {	# N STAGE: "done in X s" of a stage in build N
	sed -n "s/^imgbuild: stage $2: done in \([0-9.]*\) s$/\1/p" "$TMP/build$1.out" | tail -n 1
}
cleanup_run() {
	local k
	for k in $(tar -xOf "$OUT" ./.imgbuild/facts.toml 2>/dev/null | sed -n 's/^stage_key_\(vision\|check\) = "\([0-9a-f]*\)"$/\2/p'); do
		rm -rf --one-file-system "${IMGBUILD_CACHE:?}/layers/$k"
	done
	rm -rf --one-file-system "${IMGBUILD_CACHE:?}/ccache/$CCDIR"
}

override "$TMP/override1.toml" cold
if build 1; then
	ok "vision-cpu builds with a cold ccache ($(cat "$TMP/build1.time") s)"
else
	not_ok "vision-cpu builds with a cold ccache"
	sed 's/^/# /' "$TMP/build1.out" | tail -n 40
	rm -rf --one-file-system "${IMGBUILD_CACHE:?}/ccache/$CCDIR"
	finish
fi
grep -E 'bootstrap|stage .*done|stages run|packed|finished' "$TMP/build1.out" | sed 's/^/#   /'
cold=$(stage_time 1 vision)
check "the vision stage ran" grep -q 'stages run: .*vision' "$TMP/build1.out"
check "the install left torch untouched (PROTECT_PACKAGE)" grep -q 'python-project: torch unchanged' "$TMP/vision1.log"
check "the compiler ran through ccache" grep -qE 'python-project: torchvision from .*ccache=1' "$TMP/vision1.log"
check "the check stage ran nms: keep [0, 2]" grep -qE 'torch 2\.6.* torchvision 0\.21\.0.* nms keep \[0, 2\]' "$TMP/bd/logs/check.log"
check "imgbuild verify" "$IMGBUILD" verify "$OUT" --allow-unsigned
nms_in_image() {
	"$IMGBUILD" run "$OUT" --allow-unsigned -- python3 -c '
import torch, torchvision
from torchvision.ops import nms
b = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.], [20., 20., 30., 30.]])
k = nms(b, torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist()
print(torchvision.__version__, k)
assert k == [0, 2] and torchvision.__version__.startswith("0.21.0")
import torchvision.io, torchvision.models
m = torchvision.models.resnet18(weights=None).eval()
assert m(torch.zeros(1, 3, 64, 64)).shape == (1, 1000)
'
}
check "imgbuild run IMAGE: torchvision.ops.nms and a resnet18 forward pass" nms_in_image
facts_ok() {
	local f
	f=$(tar -xOf "$OUT" ./.imgbuild/facts.toml)
	grep -q '^torchvision_version = "0\.21\.0' <<<"$f" &&
		grep -q '^torchvision_source_sha256 = "0a4a967bbb7f9810f792cd0289a07fb98c8fb5d1303fae8b63e3a6b05d720058"' <<<"$f"
}
check "the image's facts: torchvision 0.21.0 and the source tarball's sha256" facts_ok

# The same stage again, its key changed, with the ccache folder now filled.
override "$TMP/override2.toml" warm
if build 2; then
	ok "vision-cpu rebuilds the vision stage with a warm ccache ($(cat "$TMP/build2.time") s)"
else
	not_ok "vision-cpu rebuilds the vision stage with a warm ccache"
	sed 's/^/# /' "$TMP/build2.out" | tail -n 40
fi
grep -E 'stage .*done|stages run|packed|finished' "$TMP/build2.out" | sed 's/^/#   /'
warm=$(stage_time 2 vision)
check "only the vision and check stages ran again" grep -q 'stages run: vision, check; cached: toolchain, torch' "$TMP/build2.out"
grep 'python-project: ccache:' "$TMP/vision2.log" | sed 's/^/#   warm /'
ccache_hits() {	# the warm stage's ccache statistics: hits and no misses worth a mention
	local hits misses
	hits=$(grep -oE 'ccache: +(Hits|cache hit[^:]*): +[0-9]+' "$TMP/vision2.log" | grep -oE '[0-9]+$' | head -n 1)
	misses=$(grep -oE 'ccache: +(Misses|cache miss): +[0-9]+' "$TMP/vision2.log" | grep -oE '[0-9]+$' | head -n 1)
	echo "hits ${hits:-?} misses ${misses:-?}"
	[ "${hits:-0}" -gt 0 ] && [ "${misses:-1}" -le $((hits / 10)) ]
}
check "the warm stage's compiles hit ccache" ccache_hits
check "the warm stage is faster than the cold one (${warm:-?} s vs ${cold:-?} s)" \
	awk -v c="${cold:-0}" -v w="${warm:-0}" 'BEGIN { exit !(w > 0 && c > 0 && w < c) }'
check "imgbuild run IMAGE: nms after the warm rebuild" nms_in_image
diag "vision stage: cold ccache ${cold:-?} s, warm ccache ${warm:-?} s; builds: $(cat "$TMP/build1.time") s, $(cat "$TMP/build2.time") s ($(nproc) CPUs)"
cleanup_run
finish
