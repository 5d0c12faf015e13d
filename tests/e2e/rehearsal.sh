#!/usr/bin/env bash
# The rehearsal: builds both seed manifests (manifests/gt-cu10.toml,
# manifests/mx150-cu92.toml) with the engine, their NVIDIA/Anaconda/GitHub inputs
# replaced by the fixtures of tests/fixtures/make-fixtures.sh through
# `imgbuild build MANIFEST --override OVERLAY` (tests/fixtures/rehearsal-overlay.toml.in),
# on the real bionic base, or on Debian bookworm when the Ubuntu archive does not
# answer. Then: the image's facts and lock, and the vision-replaces-torch fixture
# must fail the build, and so must torch built with USE_MPI=0 (the check stage's
# CHECK_MPI asks torch.distributed.is_mpi_available(), which the fake torch answers
# from how it was built).
source "$(dirname "$0")/../lib.sh"
require_root
if [ ! -x "$IMGBUILD" ] || ! "$IMGBUILD" build --help 2>&1 | grep -q -- '--override'; then
	skip "no imgbuild with build --override (make first)"
	finish
fi
FX=$TMP/fixtures
bash "$REPO/tests/fixtures/make-fixtures.sh" "$FX" >/dev/null
source "$FX/fixtures.env"
ok "fixtures generated"

fallback=0
if ! ubuntu_archive_answers; then
	fallback=1
	diag "the Ubuntu archive does not answer: rehearsing on Debian bookworm"
fi

# render SEED REPLACES_TORCH OUT: the overlay for one seed manifest.
render() {
	local seed=$1 replaces=$2 outf=$3
	python3 - "$seed" "$REPO/tests/fixtures/rehearsal-overlay.toml.in" "$outf" "$fallback" "$replaces" <<'PY'
import os, re, sys, tomllib
seed_path, tmpl_path, out_path, fallback, replaces = sys.argv[1:]
seed = tomllib.load(open(seed_path, "rb"))
t = open(tmpl_path).read()
if fallback != "1":
    t = re.sub(r"#BASE-FALLBACK-BEGIN\n.*?#BASE-FALLBACK-END\n", "", t, flags=re.S)
cuda = seed["stack"]["cuda"]
runfile = {"10.0": "cuda_10.0.130_410.48_fixture_linux.run", "9.2": "cuda_9.2.148_396.37_fixture_linux.run",
           "9.1": "cuda_9.1.85_387.26_fixture_linux.run"}[cuda]
cudnn = "cudnn-%s-linux-x64-v7.6.5.32.tgz" % seed["stack"].get("cudnn_cuda", cuda)
env = os.environ
def sha(name):
    return env["SHA256_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()]
pkgs = list(seed["base"].get("packages", []))
for p in ("python3",):
    if p not in pkgs:
        pkgs.append(p)
conda = [s for s in seed["stage"] if s["name"] == "conda"][0]["env"]["CONDA_PACKAGES"]
vals = {
    "FIXTURES": env["FIXTURES"], "CUDA_RUNFILE": runfile, "CUDA_SHA256": sha(runfile),
    "CUDNN_TGZ": cudnn, "CUDNN_SHA256": sha(cudnn),
    "CONDA_SHA256": sha("Miniconda3-fixture-Linux-x86_64.sh"), "CHANNEL_SHA256": sha("conda-channel.tar"),
    "VISION_SHA256": sha("vision-0.5.0.tar.gz"), "TORCH_COMMIT": env["TORCH_COMMIT"],
    "BASE_PACKAGES": ", ".join('"%s"' % p for p in pkgs), "CONDA_PACKAGES": conda,
    "VISION_REPLACES_TORCH": replaces,
}
t = re.sub(r"@([A-Z0-9_]+)@", lambda m: vals[m.group(1)], t)
open(out_path, "w").write(t)
PY
}
export FIXTURES SHA256_CUDA_10_0_130_410_48_FIXTURE_LINUX_RUN SHA256_CUDA_9_2_148_396_37_FIXTURE_LINUX_RUN \
	SHA256_CUDA_9_1_85_387_26_FIXTURE_LINUX_RUN SHA256_CUDNN_10_0_LINUX_X64_V7_6_5_32_TGZ \
	SHA256_CUDNN_9_2_LINUX_X64_V7_6_5_32_TGZ SHA256_CUDNN_9_1_LINUX_X64_V7_6_5_32_TGZ \
	SHA256_MINICONDA3_FIXTURE_LINUX_X86_64_SH SHA256_CONDA_CHANNEL_TAR SHA256_VISION_0_5_0_TAR_GZ TORCH_COMMIT

export IMGBUILD_CACHE=${IMGBUILD_CACHE:-$TMP/cache}
for seed in gt-cu10 mx150-cu92; do
	m=$REPO/manifests/$seed.toml
	[ -f "$m" ] || { skip "$seed.toml not written yet"; continue; }
	render "$m" 0 "$TMP/$seed.overlay.toml"
	out=$TMP/$seed.tar
	check "$seed builds with the fixture overlay" "$IMGBUILD" build "$m" --override "$TMP/$seed.overlay.toml" -o "$out"
	[ -f "$out" ] || continue
	# The engine folds /.imgbuild/facts.d into /.imgbuild/facts.toml and lock.d into /.imgbuild/lock.
	mkdir -p "$TMP/$seed.root"
	tar -xf "$out" -C "$TMP/$seed.root" ./.imgbuild/facts.toml ./.imgbuild/lock 2>/dev/null || true
	facts=$TMP/$seed.root/.imgbuild/facts.toml
	fact() { python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb")).get(sys.argv[2], ""))' "$facts" "$1"; }
	cuda=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["stack"]["cuda"])' "$m")
	check "  $seed: facts cuda_version $cuda.*, cudnn_version 7.6.5, torch_version 1.4.0, torchvision_version 0.5.0, torch_archs" bash -c "
		[[ \"$(fact cuda_version)\" == $cuda.* ]] && [ \"$(fact cudnn_version)\" = 7.6.5 ] &&
		[ \"$(fact torch_version)\" = 1.4.0 ] && [ \"$(fact torchvision_version)\" = 0.5.0 ] &&
		[ -n \"$(fact torch_archs)\" ]"
	[ "$(fact torchvision_version)" = 0.5.0 ] || sed "s/^/# facts.toml: /" "$facts"
	# Sources are exported without .git: the engine's lock names the commit.
	check "  $seed: the lock pins torch to the fixture's tag commit" grep -q "^source torch $TORCH_COMMIT\$" "$TMP/$seed.root/.imgbuild/lock"
	check "  $seed: the lock holds conda's explicit list with magma" bash -c "
		grep -q '^@EXPLICIT' $TMP/$seed.root/.imgbuild/lock && grep -q '/magma-cuda' $TMP/$seed.root/.imgbuild/lock"
	# Every CONDA_PACKAGES spec is pinned (name=X.Y.Z) and the explicit lock holds that exact build.
	specs=$(python3 -c 'import sys, tomllib; print([s for s in tomllib.load(open(sys.argv[1], "rb"))["stage"] if s["name"] == "conda"][0]["env"]["CONDA_PACKAGES"])' "$m")
	missing=""
	for spec in $specs; do
		case "$spec" in *=[0-9]*) ;; *) missing="$missing unpinned:$spec" ; continue ;; esac
		grep -q "/${spec%%=*}-${spec#*=}-" "$TMP/$seed.root/.imgbuild/lock" || missing="$missing $spec"
	done
	if [ -z "$missing" ]; then ok "  $seed: every conda package is pinned and in the explicit lock at that version"
	else not_ok "  $seed: conda pins vs lock:$missing"; fi
	# 3.0 is in archs: python-project.sh added it to torch's cpp_extension list (CPP_EXTENSION_ARCHS),
	# without which the fixture vision, like torch.utils.cpp_extension, refuses it.
	check "  $seed: torch built for 3.0 and cpp_extension patched for it (vision built)" bash -c "
		[[ \"$(fact torch_archs)\" == 3.0\;* ]] && [ \"$(fact torch_cpp_extension_archs_added)\" = 3.0 ] &&
		[ \"$(fact torchvision_version)\" = 0.5.0 ]"
	check "  $seed: no driver library and no stub on a runtime path in the image" bash -c "
		! tar -tf $out | grep -E 'libcuda\.so\.1|libnvidia-' && ! tar -xOf $out --wildcards './etc/ld.so.conf*' 2>/dev/null | grep -q stubs"
done

m=$REPO/manifests/gt-cu10.toml
if [ -f "$m" ]; then
	render "$m" 1 "$TMP/replace.overlay.toml"
	rc=0
	"$IMGBUILD" build "$m" --override "$TMP/replace.overlay.toml" -o "$TMP/replace.tar" >"$TMP/replace.log" 2>&1 || rc=$?
	# The stage's own words may be in the stage log rather than on stdout.
	if [ "$rc" -ne 0 ] && grep -rqs 'REPLACED OR CHANGED torch' "$TMP/replace.log" "$IMGBUILD_CACHE" "$REPO/build" 2>/dev/null; then
		ok "gt-cu10 with vision replacing the compiled torch fails the build (exit $rc)"
	else
		not_ok "gt-cu10 with vision replacing the compiled torch must fail with 'REPLACED OR CHANGED torch' (exit $rc)"
		tail -n 20 "$TMP/replace.log" | sed 's/^/# /'
	fi
fi

# Without CPP_EXTENSION_ARCHS the torch stage leaves cpp_extension's list as torch 1.4
# ships it (no 3.0), and the vision stage fails as torch.utils.cpp_extension would.
if [ -f "$m" ]; then
	render "$m" 0 "$TMP/nopatch.overlay.toml"
	torch_env=$(python3 -c 'import sys, tomllib
env = [s for s in tomllib.load(open(sys.argv[1], "rb"))["stage"] if s["name"] == "torch"][0]["env"]
env.pop("CPP_EXTENSION_ARCHS", None)
print(", ".join("%s = \"%s\"" % kv for kv in env.items()))' "$m")
	printf '\n[[stage]]\nname = "torch"\nenv = { %s }\n' "$torch_env" >>"$TMP/nopatch.overlay.toml"
	rc=0
	"$IMGBUILD" build "$m" --override "$TMP/nopatch.overlay.toml" -o "$TMP/nopatch.tar" >"$TMP/nopatch.log" 2>&1 || rc=$?
	if [ "$rc" -ne 0 ] && grep -rqs 'Unknown CUDA arch (3.0) or GPU not supported' "$TMP/nopatch.log" "$IMGBUILD_CACHE/builds" 2>/dev/null; then
		ok "gt-cu10 without CPP_EXTENSION_ARCHS: vision refuses arch 3.0 (exit $rc)"
	else
		not_ok "gt-cu10 without CPP_EXTENSION_ARCHS must fail in vision with 'Unknown CUDA arch (3.0)' (exit $rc)"
		tail -n 20 "$TMP/nopatch.log" | sed 's/^/# /'
	fi
fi

# USE_MPI=0 on the torch stage: the fake torch has no MPI backend, and the check
# stage (CHECK_MPI=1, which passed above with a two-rank allreduce) must fail.
if [ -f "$m" ]; then
	render "$m" 0 "$TMP/nompi.overlay.toml"
	python3 - "$m" >>"$TMP/nompi.overlay.toml" <<'PY'
import sys, tomllib
seed = tomllib.load(open(sys.argv[1], "rb"))
env = dict([s for s in seed["stage"] if s["name"] == "torch"][0]["env"])
env["USE_MPI"] = "0"
print('\n[[stage]]\nname = "torch"\nenv = { %s }' % ", ".join('%s = "%s"' % kv for kv in env.items()))
PY
	rc=0
	"$IMGBUILD" build "$m" --override "$TMP/nompi.overlay.toml" -o "$TMP/nompi.tar" >"$TMP/nompi.log" 2>&1 || rc=$?
	if [ "$rc" -ne 0 ] && grep -qs 'built without the MPI backend' "$TMP/nompi.log" "$IMGBUILD_CACHE/builds/gt-cu10/logs/check.log"; then
		ok "gt-cu10 with torch built USE_MPI=0 fails its check: no MPI backend (exit $rc)"
	else
		not_ok "gt-cu10 with USE_MPI=0 must fail the check with 'built without the MPI backend' (exit $rc)"
		tail -n 20 "$TMP/nompi.log" | sed 's/^/# /'
	fi
	check "  and no image is left at the output path" test ! -e "$TMP/nompi.tar"
fi
finish
